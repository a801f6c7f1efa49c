package policy

import (
	"context"
	"testing"

	"github.com/wingman-app/wingate/sdk/abi"
)

func TestSmoke(t *testing.T) {
	rt := testRuntime(t)
	v := loadGuest(t, rt, "ok", "a", Spec{})
	d, err := v.Cache(context.Background(), &abi.CacheRequest{Method: "GET", Path: "/x"})
	t.Logf("%+v %v %+v", d, err, v.Stats())
	r, err := v.Route(context.Background(), &abi.RouteRequest{Message: "hello world"})
	t.Logf("%+v %v", r, err)
}
