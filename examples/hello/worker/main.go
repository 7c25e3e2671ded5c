// Command worker runs the hello example's worker with plain Temporal SDK settings. Started against `blindfold dev`,
// it talks to the Blindfold proxy on 127.0.0.1:7233, which encrypts everything it sends to the server.
package main

import (
	"log/slog"
	"os"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"

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

	w := worker.New(c, hello.TaskQueue, worker.Options{})
	w.RegisterWorkflow(hello.Workflow)
	w.RegisterActivity(hello.Greet)
	slog.Info("worker polling; Ctrl-C to stop", "address", opts.HostPort, "task_queue", hello.TaskQueue)
	if err := w.Run(worker.InterruptCh()); err != nil {
		slog.Error("worker stopped", "error", err)
		os.Exit(1)
	}
}
