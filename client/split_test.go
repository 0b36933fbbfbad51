package client

import (
	"fmt"
	"testing"
)

func TestSplit(t *testing.T) {
	for _, tc := range []struct {
		ranges []Range
		size   int64
		total  int64
		want   string
	}{
		{[]Range{{0, 10}}, 4, 10, "[{0 4} {4 4} {8 2}]"},    // a new file: the last part may be short
		{[]Range{{4, 4}, {12, 3}}, 4, 15, "[{4 4} {12 3}]"}, // a resume with the same size: the lost parts
		{[]Range{{2, 7}}, 4, 20, "[{2 7}]"},                 // unaligned edges join their neighbour: {2 2}+{4 4}+{8 1}
		{[]Range{{5, 2}}, 4, 20, "[{3 4}]"},                 // a lone sliver widens back over held bytes
		{[]Range{{1, 2}}, 4, 3, "[{1 2}]"},                  // at the end of the file it may stay short
		{[]Range{{0, 3}}, 8, 20, "[{0 3}]"},                 // nothing to widen over: as it is
	} {
		if got := fmt.Sprint(split(tc.ranges, tc.size, tc.total)); got != tc.want {
			t.Errorf("split(%v, %d, %d) = %s, want %s", tc.ranges, tc.size, tc.total, got, tc.want)
		}
	}
}
