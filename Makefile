# The two commands a newcomer needs (see README.md). CI runs `make test` through .ci/run.
.PHONY: demo test

demo:
	tests/demo.sh

test:
	tests/run-all.sh
