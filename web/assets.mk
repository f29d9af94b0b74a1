# Browser assets for the web UI. Include from the top-level Makefile
# (include web/assets.mk) and make `go build` depend on $(WEB_ASSETS).
# The files land in web/static/vendor/ (gitignored) and are embedded.
WEB_ASSETS := web/static/vendor/.stamp

$(WEB_ASSETS): package.json package-lock.json web/vendor.sh
	sh web/vendor.sh
