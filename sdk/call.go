package sdk

import (
	"errors"
	"fmt"

	"github.com/wingman-app/wingate/sdk/abi"
)

var errInputSize = errors.New("input length exceeds the buffer")

// local is the dispatcher used by the Call functions, separate from the
// one serving the host so that native tests never share its buffers.
var local dispatcher

// ErrPolicy is wrapped by the errors of the Call functions when the
// handler returned an error or panicked, as the host would see it.
var ErrPolicy = errors.New("sdk: policy error")

// result turns a payload into its decision bytes or the policy's error.
func result(out []byte) ([]byte, error) {
	if len(out) == 0 {
		return nil, fmt.Errorf("sdk: empty result payload")
	}
	if abi.Status(out[0]) != abi.StatusOK {
		return nil, fmt.Errorf("%w: %s", ErrPolicy, out[1:])
	}
	return out[1:], nil
}

// CallInit runs the registered init handler with config the way the host
// does when it starts an instance. It is meant for unit tests.
func CallInit(config []byte) error {
	_, err := result(local.initialize(config))
	return err
}

// CallCache runs the registered cache handler on req through the ABI's
// binary encoding in both directions, the way the host calls it. It is
// meant for unit tests of a policy, natively, without WebAssembly.
//
// As in a guest, the request's strings seen by the handler are views of
// the input buffer; after the handler returns that buffer is overwritten,
// so a handler that keeps a request string without strings.Clone fails its
// own tests instead of misbehaving in production.
func CallCache(req CacheRequest) (CacheDecision, error) {
	return call(abi.KindCache, &req, abi.AppendCacheRequest, abi.DecodeCacheDecision, true)
}

// CallRoute is CallCache for the route kind.
// Its request's message is a view of the input buffer, as in CallCache.
func CallRoute(req RouteRequest) (RouteDecision, error) {
	return call(abi.KindRoute, &req, abi.AppendRouteRequest, abi.DecodeRouteDecision, true)
}

// CallCompress is CallCache for the compress kind; its request's strings
// are copies the handler may keep.
func CallCompress(req CompressRequest) (CompressDecision, error) {
	return call(abi.KindCompress, &req, abi.AppendCompressRequest, abi.DecodeCompressDecision, false)
}

// call encodes req as the host does, runs the kind's handler on it,
// overwrites the input afterwards when the handler sees views of it
// (poisonInput), and decodes the decision.
func call[Req, Dec any](kind abi.Kind, req *Req, encode func([]byte, *Req) []byte, decode func([]byte, *Dec) error, poisonInput bool) (Dec, error) {
	var d Dec
	in := encode(nil, req)
	out := local.decide(kind, in)
	if poisonInput {
		poison(in)
	}
	b, err := result(out)
	if err != nil {
		return d, err
	}
	if err := decode(b, &d); err != nil {
		return d, fmt.Errorf("sdk: decode %s decision: %w", kind, err)
	}
	return d, nil
}

// poison overwrites an input buffer after its handler returned, the way
// the host's next request would.
func poison(b []byte) {
	for i := range b {
		b[i] = 0xa5
	}
}

// Kinds returns the kinds that have a registered handler, in ABI order:
// what the module will report to the host.
func Kinds() []Kind {
	var ks []Kind
	set := kinds()
	for _, k := range abi.Kinds {
		if set&k.Bit() != 0 {
			ks = append(ks, k)
		}
	}
	return ks
}
