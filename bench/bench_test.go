package main

import (
	"bytes"
	"math"
	"testing"
)

// TestQuick runs every default scenario in quick mode (the cluster scenario's harness is tested by
// internal/e2e/clustere2e) against one embedded server, so the harness never rots. It asserts no
// timings (CI machines vary; performance is judged from the printed figures), only that every scenario ran without
// error and produced finite numbers.
func TestQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an embedded Temporal server and builds the proxy binary")
	}
	var out bytes.Buffer
	results, err := Run(t.Context(), Options{Quick: true, Out: &out})
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != len(defaultScenarios()) {
		t.Fatalf("%d results for %d scenarios", len(results), len(defaultScenarios()))
	}
	for _, r := range results {
		if len(r.Rows) == 0 {
			t.Errorf("scenario %s produced no figures", r.Scenario)
		}
		for _, row := range r.Rows {
			if math.IsNaN(row.Value) || math.IsInf(row.Value, 0) {
				t.Errorf("scenario %s, %s: value %v", r.Scenario, row.Measure, row.Value)
			}
		}
	}
}

func TestUnknownScenario(t *testing.T) {
	if _, err := Run(t.Context(), Options{Scenarios: []string{"nope"}}); err == nil {
		t.Fatal("Run accepted an unknown scenario")
	}
}
