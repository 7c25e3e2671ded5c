// Command worker runs the sdkplugin example's worker: every payload it sends is encrypted in the SDK by
// Blindfold's plugin before it leaves the process, so it can talk to any Temporal frontend directly.
package main

import (
	"flag"
	"log/slog"
	"os"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"

	sdkpluginexample "github.com/blindfold-dev/blindfold/examples/sdkplugin"
)

func main() {
	var cfg sdkpluginexample.Config
	cfg.RegisterFlags(flag.CommandLine)
	flag.Parse()

	plugin, err := cfg.Plugin()
	if err != nil {
		slog.Error("create the blindfold plugin", "error", err)
		os.Exit(1)
	}
	// The one line that turns encryption on: the plugin sets the client's data and failure converters, and every
	// worker built from the client inherits them.
	c, err := client.Dial(client.Options{HostPort: cfg.Address, Namespace: cfg.Namespace, Plugins: []client.Plugin{plugin}})
	if err != nil {
		slog.Error("connect to temporal", "address", cfg.Address, "error", err)
		os.Exit(1)
	}
	defer c.Close()

	w := worker.New(c, sdkpluginexample.TaskQueue, worker.Options{})
	w.RegisterWorkflow(sdkpluginexample.ChargeWorkflow)
	w.RegisterActivity(sdkpluginexample.Charge)
	slog.Info("worker polling", "address", cfg.Address, "namespace", cfg.Namespace, "task_queue", sdkpluginexample.TaskQueue)
	if err := w.Run(worker.InterruptCh()); err != nil {
		slog.Error("worker stopped", "error", err)
		os.Exit(1)
	}
}
