# Browser assets for the web UI. Include from the top-level Makefile
# (include web/assets.mk). The files in web/static/vendor/ are committed,
# so a plain `go build ./cmd/labd` or `go install` has a terminal;
# `make assets` makes them again from package-lock.json's pinned packages,
# and check-assets fails when the committed ones are not what it makes.
WEB_ASSETS := web/static/vendor/.stamp

$(WEB_ASSETS): package.json package-lock.json web/vendor.sh
	sh web/vendor.sh

check-assets: $(WEB_ASSETS)
	@git diff --quiet -- web/static/vendor || { echo "web/static/vendor differs from what package-lock.json makes (make assets): commit the files make assets wrote" >&2; git diff --stat -- web/static/vendor >&2; exit 1; }
