package main

import (
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

// passthrough is a gRPC hop that forwards every unary call's bytes to an upstream without decoding them: the cost of
// an extra hop with nothing done in it, to separate from what Blindfold adds on top.
type passthrough struct {
	addr string
	srv  *grpc.Server
	conn *grpc.ClientConn
}

type rawFrame struct{ b []byte }

type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return v.(*rawFrame).b, nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	v.(*rawFrame).b = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

func newPassthrough(upstream string) (*passthrough, error) {
	conn, err := grpc.NewClient(upstream, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	p := &passthrough{conn: conn}
	p.srv = grpc.NewServer(grpc.ForceServerCodec(rawCodec{}), grpc.UnknownServiceHandler(func(_ any, stream grpc.ServerStream) error {
		ctx := stream.Context()
		method, _ := grpc.MethodFromServerStream(stream)
		var in, out rawFrame
		if err := stream.RecvMsg(&in); err != nil {
			return err
		}
		if md, ok := metadata.FromIncomingContext(ctx); ok {
			ctx = metadata.NewOutgoingContext(ctx, md)
		}
		if err := conn.Invoke(ctx, method, &in, &out, grpc.ForceCodec(rawCodec{})); err != nil {
			return err
		}
		return stream.SendMsg(&out)
	}))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		conn.Close()
		return nil, err
	}
	p.addr = lis.Addr().String()
	go p.srv.Serve(lis)
	return p, nil
}

func (p *passthrough) stop() {
	p.srv.Stop()
	p.conn.Close()
}
