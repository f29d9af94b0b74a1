package api

import (
	"context"
	"fmt"
	"net/http"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/versions"
)

// DiskUsageBackend is `docker system df`.
type DiskUsageBackend interface {
	// SystemDiskUsage fills the parts asked for: "image", "container",
	// "volume", "build-cache" (all when none is).
	SystemDiskUsage(ctx context.Context, kinds map[string]bool) (*types.DiskUsage, error)
}

func (s *server) systemDF(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	kinds := map[string]bool{}
	for _, t := range r.Form["type"] {
		switch t {
		case "image", "container", "volume", "build-cache":
			kinds[t] = true
		default:
			return InvalidParameterError(fmt.Errorf("unknown object type: %s", t))
		}
	}
	if len(kinds) == 0 {
		kinds = map[string]bool{"image": true, "container": true, "volume": true, "build-cache": true}
	}
	du, err := s.b.SystemDiskUsage(ctx, kinds)
	if err != nil {
		return err
	}
	if versions.LessThan(apiVersion(ctx), "1.44") {
		// Older CLIs take UNIQUE SIZE as VirtualSize - SharedSize.
		for _, im := range du.Images {
			im.VirtualSize = im.Size //nolint:staticcheck // still sent to old clients, as dockerd does
		}
	}
	return writeJSON(w, http.StatusOK, du)
}
