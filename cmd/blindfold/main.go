// Command blindfold is the one Blindfold binary: the dev stack, the production proxy, key management and offline tools.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// rootCmd is the command every subcommand file registers itself with from its init function.
var rootCmd = &cobra.Command{
	Use:   "blindfold",
	Short: "Blindfold encrypts every Temporal payload with keys you hold",
	Long: `Blindfold is a codec gateway for Temporal: a gRPC proxy inside your network that
encrypts every payload (inputs, results, signals, memos, headers, failures) before it
reaches the Temporal backend, and decrypts it on the way back.

Start here:
  blindfold dev          run the whole stack on this machine
  blindfold keys init    create the local master key and a key for a namespace`,
	SilenceUsage:  true,
	SilenceErrors: true,
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := rootCmd.ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "blindfold:", err)
		os.Exit(1)
	}
}
