package enginetest

import (
	"fmt"
	"os"
	"testing"
)

// pair is shared by the package's tests: starting dockerd costs seconds.
var pair *Pair

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Println("enginetest: needs root (overlay mounts, containers); skipping")
		os.Exit(0)
	}
	var err error
	pair, err = StartPair()
	if err != nil {
		fmt.Fprintln(os.Stderr, "enginetest:", err)
		RemoveBinary()
		os.Exit(1)
	}
	code := m.Run()
	pair.Close()
	RemoveBinary()
	os.Exit(code)
}

// both runs f for labd and, unless switched off, dockerd.
func both(t *testing.T) []*Engine {
	if pair.Dockerd == nil {
		return []*Engine{pair.Labd}
	}
	return []*Engine{pair.Labd, pair.Dockerd}
}
