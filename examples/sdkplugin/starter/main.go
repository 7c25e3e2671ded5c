// Command starter starts one run of the sdkplugin example's workflow and prints its result. The order it sends,
// card number included, is encrypted by Blindfold's plugin before it leaves the process.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"go.temporal.io/sdk/client"

	sdkpluginexample "github.com/blindfold-dev/blindfold/examples/sdkplugin"
)

func main() {
	var cfg sdkpluginexample.Config
	cfg.RegisterFlags(flag.CommandLine)
	flag.Parse()
	if err := run(cfg); err != nil {
		slog.Error("starter failed", "error", err)
		os.Exit(1)
	}
}

func run(cfg sdkpluginexample.Config) error {
	plugin, err := cfg.Plugin()
	if err != nil {
		return fmt.Errorf("create the blindfold plugin: %w", err)
	}
	c, err := client.Dial(client.Options{HostPort: cfg.Address, Namespace: cfg.Namespace, Plugins: []client.Plugin{plugin}})
	if err != nil {
		return fmt.Errorf("connect to temporal at %s: %w", cfg.Address, err)
	}
	defer c.Close()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	order := sdkpluginexample.Order{
		ID:         fmt.Sprintf("order-%d", time.Now().UnixNano()),
		Customer:   "Ada Lovelace",
		CardNumber: "4111 1111 1111 1111",
		Amount:     42.50,
	}
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:        "charge-" + order.ID,
		TaskQueue: sdkpluginexample.TaskQueue,
	}, sdkpluginexample.ChargeWorkflow, order)
	if err != nil {
		return fmt.Errorf("start workflow: %w", err)
	}
	fmt.Printf("started workflow %s (run %s)\n", run.GetID(), run.GetRunID())

	var receipt sdkpluginexample.Receipt
	if err := run.Get(ctx, &receipt); err != nil {
		return fmt.Errorf("workflow %s: %w", run.GetID(), err)
	}
	fmt.Printf("receipt: order %s, charged %.2f, %s\n", receipt.OrderID, receipt.Charged, receipt.Note)
	fmt.Printf("the server stored only ciphertext; look for yourself:\n  temporal workflow show --address %s --namespace %s --workflow-id %s --output json\n",
		cfg.Address, cfg.Namespace, run.GetID())
	return nil
}
