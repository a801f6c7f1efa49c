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
var comp *compressor.Compressor

// configure parses the configuration once per instance.
func configure(config []byte) error {
	cfg, err := compressor.ParseConfig(config)
	if err != nil {
		return err
	}
	c, err := compressor.New(cfg)
	if err != nil {
		return err
	}
	comp = c
	return nil
}

// decide answers one compress request; before init it uses the defaults.
func decide(req sdk.CompressRequest) (sdk.CompressDecision, error) {
	if comp == nil {
		if err := configure(nil); err != nil {
			return sdk.CompressDecision{}, err
		}
	}
	return comp.Compress(&req), nil
}

func init() {
	sdk.OnInit(configure)
	sdk.HandleCompress(decide)
}

func main() {}
