// Command compress is Wingate's default compress policy, a WebAssembly
// module built with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -o policies/compress.wasm ./plugins/compress
//
// It keeps pinned system messages, a recent window and the earlier turns
// relevant to the new message, and summarises the rest; the algorithm and
// its tunables live in package compressor, the tunables' values in the
// compress entry of policies/policies.json.
package main

import (
	"github.com/wingman-app/wingate/plugins/compress/compressor"
	"github.com/wingman-app/wingate/sdk"
)

// comp is the instance's compressor, built by the init handler from the
// policy's configuration.
var comp = sdk.Configure(func(config []byte) (*compressor.Compressor, error) {
	cfg, err := compressor.ParseConfig(config)
	if err != nil {
		return nil, err
	}
	return compressor.New(cfg)
})

// decide answers one compress request; before init it uses the defaults.
func decide(req sdk.CompressRequest) (sdk.CompressDecision, error) {
	c, err := comp.Get()
	if err != nil {
		return sdk.CompressDecision{}, err
	}
	return c.Compress(&req), nil
}

func init() { sdk.HandleCompress(decide) }

func main() {}
