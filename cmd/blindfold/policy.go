package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/blindfold-dev/blindfold/policy"
)

func init() { rootCmd.AddCommand(newPolicyCmd()) }

func newPolicyCmd() *cobra.Command {
	policyCmd := &cobra.Command{
		Use:   "policy",
		Short: "Work with the policy file (what is encrypted, with which keys, who may decode)",
	}
	check := &cobra.Command{
		Use:   "check FILE",
		Short: "Validate a policy file and summarize what it does",
		Long: `Check parses and validates a policy file exactly as the proxy and the codec
endpoint do at start and on every reload, and prints "OK" with a summary of every
namespace entry (key scope, what is encrypted, what is left in plaintext) and every
access rule, for review.

If the file is invalid, every problem is printed as FILE:LINE:COLUMN: FIELD: MESSAGE
and the exit status is 1. A namespace entry that lets plaintext out (memo, headers
or failure text not encrypted, or plaintext_from_sdk: pass) is invalid unless the
entry says allow_plaintext: true. The schema is in docs/policy.md.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := policy.Load(args[0])
			if err != nil {
				if !errors.Is(err, policy.ErrInvalid) {
					return err
				}
				n := 1
				if j, ok := err.(interface{ Unwrap() []error }); ok {
					n = len(j.Unwrap())
				}
				fmt.Fprintln(cmd.ErrOrStderr(), err)
				return fmt.Errorf("%s: INVALID (%d %s)", args[0], n, plural(n, "problem", "problems"))
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "OK %s\n", args[0])
			return p.WriteSummary(out)
		},
	}
	policyCmd.AddCommand(check)
	return policyCmd
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
