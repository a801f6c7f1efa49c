package keys_test

import (
	"testing"

	"github.com/wingman-app/wingate/host/keys"
	"github.com/wingman-app/wingate/host/keys/keystest"
)

func TestMemStoreContract(t *testing.T) { keystest.Run(t, keys.NewMemStore()) }
