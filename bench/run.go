package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Options selects what Run measures.
type Options struct {
	// Quick shrinks every scenario (fewer iterations, shorter windows, 200 instead of 1,000/10,000 workflows).
	Quick bool
	// Scenarios to run, by name; empty means all, in the order of scenarioNames.
	Scenarios []string
	// Out receives the tables; nil means io.Discard.
	Out io.Writer
	// LoadWorkflows and OpenWorkflows override the workflow counts of the load and memory scenarios (0 = the mode's
	// default: 10,000 and 1,000, or 100 each in quick mode).
	LoadWorkflows, OpenWorkflows int
	// TemporalCLI is the path of a `temporal` CLI binary; when set, the cli scenario also times the real CLI's
	// `workflow show` through the codec endpoint against the same command without it.
	TemporalCLI string
}

// Row is one figure of a scenario next to its baseline.
type Row struct {
	// Measure names what was measured, e.g. "1KiB seal+open".
	Measure string
	// Value is Blindfold's figure and Baseline the baseline's, both in Unit; Baseline is NaN when there is none.
	Value, Baseline float64
	Unit            string
	// Target is the target for this row, if any (e.g. "≤ 100"), and Met whether Value meets it ("yes"/"no").
	Target, Met string
	// Note says what the baseline is or anything else needed to read the row.
	Note string
}

// Ratio is Value ÷ Baseline, or NaN without a baseline.
func (r Row) Ratio() float64 {
	if math.IsNaN(r.Baseline) || r.Baseline == 0 {
		return math.NaN()
	}
	return r.Value / r.Baseline
}

// Result is what one scenario produced.
type Result struct {
	Scenario string
	Rows     []Row
	Elapsed  time.Duration
	Err      error
}

type scenario struct {
	name string
	run  func(ctx context.Context, e *env) ([]Row, error)
	// explicit scenarios run only when named (--scenario): they need more than the machine's Go toolchain.
	explicit bool
}

var scenarios = []scenario{
	{"codec", runCodec, false},
	{"rpc", runRPC, false},
	{"workflows", runWorkflows, false},
	{"endpoint", runEndpoint, false},
	{"cli", runCLI, false},
	{"memory", runMemory, false},
	{"load", runLoad, false},
	{"cluster", runCluster, true},
}

// defaultScenarios are those run when none is named.
func defaultScenarios() []scenario {
	var d []scenario
	for _, s := range scenarios {
		if !s.explicit {
			d = append(d, s)
		}
	}
	return d
}

func scenarioNames() []string {
	var n []string
	for _, s := range scenarios {
		n = append(n, s.name)
	}
	return n
}

// Run runs the selected scenarios one after another, sharing one embedded Temporal server and proxy among those that
// need them, prints each scenario's table to o.Out as soon as it is done, and returns every result. A failing scenario
// does not stop the others; the returned error joins their errors.
func Run(ctx context.Context, o Options) ([]Result, error) {
	out := o.Out
	if out == nil {
		out = io.Discard
	}
	var selected []scenario
	if len(o.Scenarios) == 0 {
		selected = defaultScenarios()
	} else {
		for _, name := range o.Scenarios {
			i := slices.IndexFunc(scenarios, func(s scenario) bool { return s.name == strings.TrimSpace(name) })
			if i < 0 {
				return nil, fmt.Errorf("unknown scenario %q (have %s)", name, strings.Join(scenarioNames(), ", "))
			}
			selected = append(selected, scenarios[i])
		}
	}
	mode := "full"
	if o.Quick {
		mode = "quick"
	}
	fmt.Fprintf(out, "blindfold bench (%s) %s  go %s  %d CPUs  load average at start: %s\n\n",
		mode, time.Now().UTC().Format(time.RFC3339), runtime.Version(), runtime.NumCPU(), loadAvg())

	e := newEnv(o.Quick)
	e.loadN, e.openN, e.temporalCLI = o.LoadWorkflows, o.OpenWorkflows, o.TemporalCLI
	defer e.close()
	var results []Result
	var errs []error
	for _, s := range selected {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		start := time.Now()
		rows, err := s.run(ctx, e)
		r := Result{Scenario: s.name, Rows: rows, Elapsed: time.Since(start), Err: err}
		results = append(results, r)
		printResult(out, r)
		if err != nil {
			errs = append(errs, fmt.Errorf("scenario %s: %w", s.name, err))
		}
	}
	fmt.Fprintf(out, "load average at end: %s\n", loadAvg())
	return results, errors.Join(errs...)
}

func printResult(out io.Writer, r Result) {
	fmt.Fprintf(out, "== %s (%s, load average %s)\n", r.Scenario, r.Elapsed.Round(100*time.Millisecond), loadAvg())
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "measure\tblindfold\tbaseline\tbf/base\tunit\ttarget\tmet\tnote")
	for _, row := range r.Rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", row.Measure, num(row.Value), num(row.Baseline), ratio(row.Ratio()),
			row.Unit, row.Target, row.Met, row.Note)
	}
	tw.Flush()
	if r.Err != nil {
		fmt.Fprintf(out, "ERROR: %v\n", r.Err)
	}
	fmt.Fprintln(out)
}

func num(v float64) string {
	switch a := math.Abs(v); {
	case math.IsNaN(v):
		return "-"
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func ratio(v float64) string {
	if math.IsNaN(v) {
		return "-"
	}
	return fmt.Sprintf("%.3f", v)
}

// loadAvg is the first three fields of /proc/loadavg, or "unknown".
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// percentile returns the p-th percentile (0 < p ≤ 100) of ds by nearest rank.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }

func met(ok bool) string {
	if ok {
		return "yes"
	}
	return "no"
}

// pick returns quick in quick mode and full otherwise.
func pick[T any](e *env, quick, full T) T {
	if e.quick {
		return quick
	}
	return full
}

func nan() float64 { return math.NaN() }
