package proxy_test

import (
	"context"
	"log"
	"net"
	"time"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/codec/codectest"
	"github.com/blindfold-dev/blindfold/proxy"
)

// Run the proxy on the SDK's default port in front of a frontend on another loopback port. A real deployment takes
// its keyring from the keys package and sets TLS on both sides.
func Example() {
	c, err := codec.New(codectest.NewKeyring())
	if err != nil {
		log.Fatal(err)
	}
	srv, err := proxy.New(proxy.Config{
		Upstream: "127.0.0.1:7234",
		Codec:    c,
		// Only these namespaces are served; everything else is PermissionDenied.
		AllowedNamespaces: []string{"default"},
	})
	if err != nil {
		log.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:7233")
	if err != nil {
		log.Fatal(err)
	}
	go func() {
		if err := srv.Serve(lis); err != nil {
			log.Print(err)
		}
	}()

	// On shutdown, give in-flight calls (long polls last up to a minute) time to finish.
	ctx, cancel := context.WithTimeout(context.Background(), 70*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		log.Print(err)
	}
}
