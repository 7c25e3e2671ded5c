// Package kekpluginpb is the generated Go code of the KEK plugin protocol (kekplugin.proto). Use package kekplugin for
// the client and the Serve helper; this package is for plugins that need the raw messages.
package kekpluginpb

// Generation is a dev step (CI uses the committed files). It needs protoc (Debian: protobuf-compiler) and, on PATH:
//   go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
//   go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.5.1
//go:generate protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative kekplugin.proto
