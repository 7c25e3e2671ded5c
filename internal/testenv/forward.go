package testenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// RawFrame is a gRPC message carried as its encoded bytes.
type RawFrame struct{ B []byte }

// RawCodec passes messages through as bytes (*RawFrame), so a forwarder needs no message types. It registers under
// the name "proto", so peers see an ordinary protobuf call.
type RawCodec struct{}

// Marshal returns the frame's bytes.
func (RawCodec) Marshal(v any) ([]byte, error) {
	f, ok := v.(*RawFrame)
	if !ok {
		return nil, fmt.Errorf("RawCodec: unexpected %T", v)
	}
	return f.B, nil
}

// Unmarshal copies data into the frame.
func (RawCodec) Unmarshal(data []byte, v any) error {
	f, ok := v.(*RawFrame)
	if !ok {
		return fmt.Errorf("RawCodec: unexpected %T", v)
	}
	f.B = append([]byte(nil), data...)
	return nil
}

// Name is "proto".
func (RawCodec) Name() string { return "proto" }

// Around wraps one forwarded call: invoke sends it upstream with the context given and returns the upstream's error;
// Around returns the error the caller gets. It may delay, count or fail the call.
type Around func(ctx context.Context, method string, invoke func(context.Context) error) error

// Forward returns a handler (for grpc.UnknownServiceHandler, with grpc.ForceServerCodec(RawCodec{})) that relays
// every unary call's bytes, with the caller's metadata, to conn. around, if not nil, wraps each call.
func Forward(conn *grpc.ClientConn, around Around) grpc.StreamHandler {
	return func(_ any, ss grpc.ServerStream) error {
		method, ok := grpc.MethodFromServerStream(ss)
		if !ok {
			return status.Error(codes.Internal, "no method")
		}
		var in, out RawFrame
		if err := ss.RecvMsg(&in); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		md, _ := metadata.FromIncomingContext(ss.Context())
		outMD := metadata.MD{}
		for k, v := range md {
			if !strings.HasPrefix(k, ":") && k != "content-type" && k != "user-agent" && k != "te" {
				outMD[k] = v
			}
		}
		ctx := metadata.NewOutgoingContext(ss.Context(), outMD)
		invoke := func(ctx context.Context) error {
			return conn.Invoke(ctx, method, &in, &out, grpc.ForceCodec(RawCodec{}))
		}
		var err error
		if around != nil {
			err = around(ctx, method, invoke)
		} else {
			err = invoke(ctx)
		}
		if err != nil {
			return err
		}
		return ss.SendMsg(&out)
	}
}

// Forwarder is a gRPC hop on loopback that forwards every unary call's bytes to an upstream without decoding them.
type Forwarder struct {
	// Addr is the forwarder's address.
	Addr string
	srv  *grpc.Server
	conn *grpc.ClientConn
}

// StartForwarder serves a Forwarder to upstream (plaintext) on a free loopback port; around, if not nil, wraps each
// call. Stop it with Stop.
func StartForwarder(upstream string, around Around) (*Forwarder, error) {
	conn, err := grpc.NewClient(upstream, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	f := &Forwarder{Addr: lis.Addr().String(), conn: conn}
	f.srv = grpc.NewServer(grpc.ForceServerCodec(RawCodec{}), grpc.UnknownServiceHandler(Forward(conn, around)))
	go func() { _ = f.srv.Serve(lis) }()
	return f, nil
}

// Stop stops serving at once and closes the upstream connection.
func (f *Forwarder) Stop() {
	f.srv.Stop()
	_ = f.conn.Close()
}
