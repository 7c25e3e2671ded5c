package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	quick := flag.Bool("quick", false, "shrink every scenario so the whole run takes under two minutes")
	scen := flag.String("scenario", "", "comma-separated scenarios to run (default all but cluster, which needs PostgreSQL): "+strings.Join(scenarioNames(), ","))
	loadN := flag.Int("load-workflows", 0, "workflows of the load scenario (default 10000, quick 100)")
	openN := flag.Int("open-workflows", 0, "open workflows of the memory scenario (default 1000, quick 100)")
	temporalCLI := flag.String("temporal-cli", os.Getenv("BLINDFOLD_TEMPORAL_CLI"), "path of a temporal CLI binary: the cli scenario then also times the real `temporal workflow show --codec-endpoint` (env BLINDFOLD_TEMPORAL_CLI)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var names []string
	if *scen != "" {
		names = strings.Split(*scen, ",")
	}
	if _, err := Run(ctx, Options{Quick: *quick, Scenarios: names, Out: os.Stdout, LoadWorkflows: *loadN, OpenWorkflows: *openN, TemporalCLI: *temporalCLI}); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}
