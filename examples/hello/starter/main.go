// Command starter starts the hello example's workflow, signals it and prints its result, with plain Temporal SDK
// settings: against `blindfold dev` every payload goes through the Blindfold proxy on 127.0.0.1:7233.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/blindfold-dev/blindfold/examples/hello"
)

func main() {
	opts := hello.ClientOptions()
	c, err := client.Dial(opts)
	if err != nil {
		slog.Error("connect to temporal (is `blindfold dev` running?)", "address", opts.HostPort, "error", err)
		os.Exit(1)
	}
	defer c.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	g, runID, err := hello.Run(ctx, c, hello.WorkflowID, hello.Request{Name: "Ada Lovelace", Email: "ada@example.com"}, hello.Approval{By: "Charles Babbage"})
	if err != nil {
		slog.Error("run workflow (is the worker running?)", "error", err)
		os.Exit(1)
	}
	fmt.Printf("workflow %s (run %s) returned:\n  %s\n  approved by %s\n", hello.WorkflowID, runID, g.Text, g.ApprovedBy)
}
