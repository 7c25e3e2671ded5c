package devstack_test

import (
	"context"
	"fmt"
	"os/signal"
	"syscall"

	"github.com/blindfold-dev/blindfold/internal/devstack"
)

// The shape of `blindfold dev`: stable ports, the raw frontend next to the
// proxy's 7233, the UI decoding through the codec endpoint. It starts a
// server, so it is compiled but not run.
func Example() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	stack, err := devstack.Start(ctx, devstack.Config{
		DataDir:         "/var/tmp/blindfold-dev",
		FrontendPort:    devstack.DefaultFrontendPort,
		UI:              true,
		UIPort:          devstack.DefaultUIPort,
		UICodecEndpoint: "http://127.0.0.1:8081",
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("raw frontend:", stack.FrontendAddr())
	fmt.Println("web ui:      ", stack.UIAddr())

	<-ctx.Done()
	if err := stack.Stop(context.Background()); err != nil {
		fmt.Println(err)
	}
}
