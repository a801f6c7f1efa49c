package memstore

import (
	"testing"

	"github.com/wingman-app/wingate/host/store/storetest"
)

func TestContract(t *testing.T) {
	storetest.Run(t, New())
}

func TestDemoHasData(t *testing.T) {
	s := Demo(500)
	if len(s.users) != 500 || len(s.locations) < 400 {
		t.Fatalf("demo: %d users, %d locations", len(s.users), len(s.locations))
	}
	scores := map[int]bool{}
	for _, v := range s.score {
		scores[v] = true
	}
	if len(scores) < 50 {
		t.Fatalf("demo reputations are not varied: %d distinct scores", len(scores))
	}
}
