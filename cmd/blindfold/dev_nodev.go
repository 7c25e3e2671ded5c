//go:build nodev

package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// The production build (-tags nodev, deploy/docker) links neither the Temporal server nor the Web UI server. It keeps
// a hidden "dev" command so that a user who tries it learns why it is missing instead of reading "unknown command".
func init() {
	rootCmd.AddCommand(&cobra.Command{
		Use:    "dev",
		Short:  "Not in this build: the dev stack needs the full build",
		Hidden: true,
		RunE: func(*cobra.Command, []string) error {
			return errors.New("this blindfold binary is the production build (-tags nodev) without the embedded Temporal server and Web UI; " +
				"run the dev stack from a source checkout: go run ./cmd/blindfold dev")
		},
	})
}
