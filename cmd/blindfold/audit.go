package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/blindfold-dev/blindfold/policy"
)

func init() {
	auditCmd := &cobra.Command{
		Use:   "audit",
		Short: "Inspect the codec endpoint's audit log",
	}
	var anchor string
	verify := &cobra.Command{
		Use:   "verify FILE",
		Short: "Check that an audit log's hash chain is unbroken",
		Long: `Verify reads an audit log (JSON lines, each record carrying the SHA-256 of the
previous one) and checks the whole chain from the first record.

It detects any edited, removed, inserted or reordered record, and a cut-off last
line. It cannot, on its own, detect that the newest records were removed or that
the very last record was edited: nothing after them carries their hash. Keep the
head hash it prints somewhere else (the endpoint also logs it after every record)
and pass it back with --anchor later: verification then fails unless that record
is still in the chain.

Exit status 0 and "OK" when the chain is intact; otherwise the first bad line.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			sum, err := policy.VerifyAudit(f, policy.VerifyOptions{Anchor: anchor})
			if err != nil {
				var ae *policy.AuditError
				if errors.As(err, &ae) {
					return fmt.Errorf("%s: FAILED at line %d: %s", args[0], ae.Line, ae.Msg)
				}
				return fmt.Errorf("%s: FAILED: %w", args[0], err)
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "OK %s: %d records, head %s\n", args[0], sum.Records, sum.Head)
			if anchor != "" {
				fmt.Fprintf(out, "anchor found at record %d\n", sum.AnchorSeq)
			}
			return nil
		},
	}
	verify.Flags().StringVar(&anchor, "anchor", "", "a head hash recorded earlier; fail unless the log still contains that record")
	auditCmd.AddCommand(verify)
	rootCmd.AddCommand(auditCmd)
}
