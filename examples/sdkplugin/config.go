package sdkpluginexample

import (
	"cmp"
	"errors"
	"flag"
	"fmt"
	"os"

	"go.temporal.io/sdk/client"

	"github.com/blindfold-dev/blindfold/keys"
	"github.com/blindfold-dev/blindfold/sdkplugin"
)

// Config is what the worker and the starter both need: where Temporal is and where the keys are.
type Config struct {
	Address       string
	Namespace     string
	KeyDir        string
	CodecEndpoint string
	CodecAuth     string
}

// RegisterFlags adds the shared flags to fs, with defaults from the environment.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Address, "address", cmp.Or(os.Getenv("TEMPORAL_ADDRESS"), client.DefaultHostPort),
		"Temporal frontend host:port ($TEMPORAL_ADDRESS)")
	fs.StringVar(&c.Namespace, "namespace", cmp.Or(os.Getenv("TEMPORAL_NAMESPACE"), client.DefaultNamespace),
		"Temporal namespace ($TEMPORAL_NAMESPACE)")
	fs.StringVar(&c.KeyDir, "key-dir", keys.DefaultDir(),
		"local key directory, created on first use ($"+keys.KeyDirEnv+")")
	fs.StringVar(&c.CodecEndpoint, "codec-endpoint", os.Getenv("BLINDFOLD_CODEC_ENDPOINT"),
		"hold no keys: encrypt through this Blindfold codec endpoint instead, e.g. http://127.0.0.1:8081 ($BLINDFOLD_CODEC_ENDPOINT)")
	fs.StringVar(&c.CodecAuth, "codec-auth", os.Getenv("BLINDFOLD_CODEC_AUTH"),
		"Authorization header for the codec endpoint, e.g. \"Bearer <token>\" ($BLINDFOLD_CODEC_AUTH)")
}

// Plugin builds the Blindfold SDK plugin the configuration asks for: local keys, or the remote codec endpoint.
func (c *Config) Plugin() (*sdkplugin.Plugin, error) {
	if c.CodecEndpoint != "" {
		var opts []sdkplugin.Option
		if c.CodecAuth != "" {
			opts = append(opts, sdkplugin.WithAuthHeader(c.CodecAuth))
		}
		return sdkplugin.NewRemote(c.CodecEndpoint, opts...)
	}
	if c.CodecAuth != "" {
		return nil, errors.New("-codec-auth needs -codec-endpoint")
	}
	kr, err := keys.OpenLocal(c.KeyDir)
	if err != nil {
		return nil, fmt.Errorf("open key directory %s: %w", c.KeyDir, err)
	}
	return sdkplugin.New(kr)
}
