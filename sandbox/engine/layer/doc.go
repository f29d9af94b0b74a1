// Package layer converts between overlay upper directories and OCI layer
// tars.
//
// Diff tars an overlay upper directory the way dockerd 20.10's overlay2
// driver does (same walk order, header fields, whiteout conversion), so the
// same change gives the same tar bytes and therefore the same diffID.
// Apply extracts a layer tar into an empty directory in overlay form so the
// directory can serve as an overlay lowerdir. Tars may be hostile (learners
// load them): Apply never writes outside its directory.
package layer
