package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/blindfold-dev/blindfold/internal/gateway"
	"github.com/blindfold-dev/blindfold/keys"
)

func init() { rootCmd.AddCommand(newKeysCmd()) }

// newKeysCmd builds "blindfold keys" and its subcommands. It is a constructor so tests can run a fresh tree.
func newKeysCmd() *cobra.Command {
	var keyDir string
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Create, rotate, list and shred data keys (local master key, Vault Transit or a KEK plugin)",
		Long: `Manage the local key directory: a master key and one Tink keyset per scope.

A scope is a key domain; by default each Temporal namespace is its own scope
(namespace "default" → scope "default"). Each scope's keyset holds AES-256-GCM
data keys, stored encrypted under the master key in <key-dir>/scopes/.

The key directory is --key-dir, else $BLINDFOLD_KEY_DIR, else ~/.blindfold/keys.
The master key is $BLINDFOLD_MASTER_KEY (32 bytes, base64) if set, else
<key-dir>/master.key, created by "keys init" with mode 0600.
` + kekHelp + "\n" + storeHelp,
		Example: `  blindfold keys init
  blindfold keys init --scope payments
  blindfold keys rotate payments
  blindfold keys list
  blindfold keys shred payments
  VAULT_ADDR=https://vault:8200 VAULT_TOKEN=… blindfold keys init --kek vault
  blindfold keys rotate-kek payments --kek vault --vault-auth approle --vault-role-id … --vault-secret-id-file /run/secret-id`,
		PersistentPreRunE: func(*cobra.Command, []string) error { return keysKEK.validate() },
	}
	keysKEK = addKEKFlags(cmd)
	cmd.PersistentFlags().StringVar(&keyDir, "key-dir", keys.DefaultDir(), "local key directory")
	cmd.AddCommand(newKeysInitCmd(&keyDir), newKeysRotateCmd(&keyDir), newKeysListCmd(&keyDir), newKeysShredCmd(&keyDir),
		newKeysRewrapCmd(&keyDir), newKeysRotateKEKCmd(&keyDir), newKeysImportDirCmd(&keyDir))
	return cmd
}

// openKeys opens the key directory; only init may create a master key. The process ends with the command, so the
// KEK (Vault token renewal) is not closed.
func openKeys(dir string, create bool) (*keys.Manager, error) {
	kc := keysKEK.keysConfig(dir, false, 0)
	kc.CreateMasterKey = create
	k, err := gateway.OpenKeys(context.Background(), kc, nil)
	if err != nil {
		return nil, err
	}
	return k.Manager, nil
}

func newKeysInitCmd(keyDir *string) *cobra.Command {
	var scope string
	var afterShred bool
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create the master key (if missing) and a keyset for a scope",
		Long: `Init creates the key directory and master key if they do not exist yet, and a
keyset with one data key for --scope. Running it again for an existing scope
changes nothing.

A shredded scope is not re-created unless --allow-after-shred is given; its old
keys stay destroyed either way.`,
		Example: `  blindfold keys init
  blindfold keys init --scope payments --key-dir /var/lib/blindfold/keys`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := keys.ValidateScope(scope); err != nil {
				return err
			}
			_, statErr := os.Stat(filepath.Join(*keyDir, keys.MasterKeyFile))
			m, err := openKeys(*keyDir, true)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			switch _, envSet := os.LookupEnv(keys.MasterKeyEnv); {
			case keysKEK.vault():
				fmt.Fprintf(out, "kek: vault transit, key %s%s at mount %s\n", keysKEK.prefix, scope, keysKEK.mount)
			case keysKEK.kind == string(gateway.KEKPlugin):
				fmt.Fprintf(out, "kek: plugin at %s\n", keysKEK.plugin.address)
			case envSet:
				fmt.Fprintf(out, "master key: from $%s\n", keys.MasterKeyEnv)
			case errors.Is(statErr, os.ErrNotExist):
				fmt.Fprintf(out, "master key: created %s (keep it secret; back it up)\n", filepath.Join(*keyDir, keys.MasterKeyFile))
			default:
				fmt.Fprintf(out, "master key: %s\n", filepath.Join(*keyDir, keys.MasterKeyFile))
			}
			id, err := m.Create(cmd.Context(), scope, keys.CreateOptions{AllowAfterShred: afterShred})
			if errors.Is(err, keys.ErrScopeExists) {
				fmt.Fprintf(out, "scope %s: already initialised\n", scope)
				return nil
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "scope %s: created, primary key %s\n", scope, id)
			return nil
		},
	}
	cmd.Flags().StringVar(&scope, "scope", "default", "scope to create a keyset for (by default a namespace's scope is its name)")
	cmd.Flags().BoolVar(&afterShred, "allow-after-shred", false, "re-create a scope that was shredded (its old keys stay destroyed)")
	return cmd
}

func newKeysRotateCmd(keyDir *string) *cobra.Command {
	return &cobra.Command{
		Use:   "rotate SCOPE",
		Short: "Add a new primary data key to a scope",
		Long: `Rotate adds a new data key to SCOPE and makes it the primary: new payloads are
sealed with it, and payloads sealed with older keys stay readable.

Running proxies seal with the new key after their next cache refresh (at most
half the cache TTL, 5 minutes by default) and can open it immediately.`,
		Example: `  blindfold keys rotate default`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := openKeys(*keyDir, false)
			if err != nil {
				return err
			}
			id, err := m.Rotate(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "scope %s: new primary key %s\n", args[0], id)
			return nil
		},
	}
}

func newKeysListCmd(keyDir *string) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Short:   "List scopes, their keys and state",
		Example: `  blindfold keys list --key-dir ./data/keys`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, err := openKeys(*keyDir, false)
			if err != nil {
				return err
			}
			infos, err := m.List(cmd.Context())
			if err != nil {
				return err
			}
			if len(infos) == 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "no scopes in %s (run: blindfold keys init)\n", *keyDir)
				return nil
			}
			printScopes(cmd.OutOrStdout(), infos)
			return nil
		},
	}
}

func printScopes(w io.Writer, infos []keys.ScopeInfo) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SCOPE\tSTATE\tKEY\tCREATED\tPRIMARY")
	for _, s := range infos {
		switch s.State {
		case "active":
			for _, k := range s.Keys {
				p := ""
				if k.Primary {
					p = "yes"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Scope, s.State, k.ID, fmtTime(k.Created), p)
			}
		case "shredded":
			fmt.Fprintf(tw, "%s\t%s\t%d keys destroyed\t%s\t\n", s.Scope, s.State, len(s.Destroyed), fmtTime(s.ShreddedAt))
		default:
			fmt.Fprintf(tw, "%s\t%s\t%v\t\t\n", s.Scope, s.State, s.Err)
		}
	}
	tw.Flush()
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func newKeysShredCmd(keyDir *string) *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use:   "shred SCOPE",
		Short: "Destroy a scope's keys: everything sealed under them becomes unreadable",
		Long: `Shred crypto-shreds SCOPE: its keyset file is overwritten and removed and a
tombstone (<key-dir>/scopes/SCOPE.shredded) records the destroyed key ids.
Every payload ever sealed under the scope, including in Temporal's history and
its backups, can then never be decrypted again. This cannot be undone.

Running proxies stop using the keys at their next refresh (at most the cache
TTL, 10 minutes by default). Copies of the key directory (backups, snapshots,
old disk blocks) can still hold the keyset: the guarantee is only as good as the
destruction of every such copy or of the master key.

With --key-store vault-kv the tombstone replaces the keyset in the scope's KV
secret (check-and-set, so a concurrent rotation cannot bring it back) and every
earlier version of that secret is destroyed; running proxies refuse the scope at
their next refresh (--key-refresh-after).

With --kek vault, shred first deletes the scope's Transit key in Vault (all its
versions); only then the local keyset. After that no copy of the keyset, backups
included, can be unwrapped. If Vault cannot be reached nothing is changed; run
the shred again.

Shred asks you to type the scope name unless --yes is given.`,
		Example: `  blindfold keys shred tenant-42
  echo tenant-42 | blindfold keys shred tenant-42
  blindfold keys shred tenant-42 --yes`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			scope := args[0]
			if err := keys.ValidateScope(scope); err != nil {
				return err
			}
			m, err := openKeys(*keyDir, false)
			if err != nil {
				return err
			}
			if !yes {
				fmt.Fprintf(cmd.ErrOrStderr(), "This destroys every key of scope %q in %s: all payloads sealed under it become unreadable forever.\nType the scope name to confirm: ", scope, keysKEK.keysConfig(*keyDir, false, 0).Where())
				line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
				if err != nil && !(errors.Is(err, io.EOF) && line != "") {
					return errors.New("shred not confirmed: no answer on standard input (use --yes in scripts)")
				}
				if strings.TrimSpace(line) != scope {
					return fmt.Errorf("shred not confirmed: typed %q, want %q", strings.TrimSpace(line), scope)
				}
			}
			if err := m.Shred(cmd.Context(), scope); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "scope %s: shredded\n", scope)
			return nil
		},
	}
	cmd.Flags().BoolVar(&yes, "yes", false, "do not ask for confirmation")
	return cmd
}
