// Package image is the engine's on-disk image store, shared by every
// sandbox of one labd process.
//
// Layout (under the engine directory, usually <data>/engine):
//
//	blobs/sha256/<hex>     content-addressed blobs: image configs (exact bytes), layer tars (uncompressed)
//	layers/<diffid-hex>/   extracted layer in overlay form (an overlay lowerdir)
//	layers/<diffid-hex>.json  {"size":N}: dockerd's size measure of the layer
//	views/<name>.json      one per sandbox ("default" for labd engine, "base" for shared images)
//	tmp/                   staging; emptied at Open
//
// Every write is staged in tmp/, fsynced and renamed into place, in the
// order blobs and layers, then configs, then the view file, so a killed
// process never leaves a half-written image visible: at worst unreferenced
// blobs remain, which GC removes.
//
// A View is what one Docker daemon would show: tags, images with their
// parent links and built-locally flags. Images of the "base" view appear in
// every other view as if pulled; removing one in a view only hides it
// there. Identifiers follow Docker: image ID = sha256 of the exact config
// bytes, diffID = sha256 of the uncompressed layer tar, chain IDs as in
// the image spec.
package image
