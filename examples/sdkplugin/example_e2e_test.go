package sdkpluginexample_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"google.golang.org/protobuf/encoding/protojson"

	sdkpluginexample "github.com/blindfold-dev/blindfold/examples/sdkplugin"
	"github.com/blindfold-dev/blindfold/internal/devstack/devstacktest"
)

func TestMain(m *testing.M) { devstacktest.Main(m) }

// TestExample runs the example's worker and starter logic against the embedded server, connected directly to
// its frontend, and checks the stored history never shows the card number.
func TestExample(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the embedded Temporal server")
	}
	s := devstacktest.Shared(t)
	cfg := sdkpluginexample.Config{Address: s.FrontendAddr(), Namespace: "default", KeyDir: t.TempDir()}
	plugin, err := cfg.Plugin()
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.Dial(client.Options{HostPort: cfg.Address, Plugins: []client.Plugin{plugin}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	w := worker.New(c, sdkpluginexample.TaskQueue, worker.Options{})
	w.RegisterWorkflow(sdkpluginexample.ChargeWorkflow)
	w.RegisterActivity(sdkpluginexample.Charge)
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	b := make([]byte, 6)
	_, _ = rand.Read(b)
	card := "CARD-" + hex.EncodeToString(b)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: fmt.Sprintf("example-%d", time.Now().UnixNano()), TaskQueue: sdkpluginexample.TaskQueue},
		sdkpluginexample.ChargeWorkflow, sdkpluginexample.Order{ID: "o1", Customer: "Ada", CardNumber: card, Amount: 1})
	if err != nil {
		t.Fatal(err)
	}
	var r sdkpluginexample.Receipt
	if err := run.Get(ctx, &r); err != nil {
		t.Fatal(err)
	}
	if r.Note != "charged card "+card {
		t.Fatalf("receipt = %+v", r)
	}

	raw, err := client.Dial(client.Options{HostPort: cfg.Address})
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	it := raw.GetWorkflowHistory(ctx, run.GetID(), "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	events := 0
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		events++
		js, _ := protojson.Marshal(ev)
		if bytes.Contains(js, []byte(card)) {
			t.Fatalf("event %d stores the card number in plaintext: %s", ev.GetEventId(), js)
		}
	}
	if events < 5 {
		t.Fatalf("history has only %d events", events)
	}
}
