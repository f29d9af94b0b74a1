package progress

import (
	"cmp"
	"slices"
)

func sortRows(rs []Row) {
	slices.SortFunc(rs, func(a, b Row) int {
		return cmp.Or(cmp.Compare(a.Lab, b.Lab), cmp.Compare(a.Learner, b.Learner))
	})
}
