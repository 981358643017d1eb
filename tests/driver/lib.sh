# lib.sh - the prologue of the trainer's end-to-end tests (source after tap.sh): the programs, a scratch
# folder $tmp removed on exit, and trainer_data, which makes $tmp/data.bin, a token shard of text files.
TRAIN=$top_builddir/trainer/driver/moe-train
ML=$top_builddir/launcher/moe-launch
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
trainer_need() {  # trainer_need PROGRAM...: the test is skipped unless each is built
	local p
	for p; do [ -x "$p" ] || skip_all "$(basename "$p") not built"; done
}
trainer_data() {  # trainer_data FILE...: any text is a dataset
	cat "$@" > "$tmp/data.txt" &&
		"$TRAIN" prepare "$tmp/data.txt" "$tmp/data.bin" > /dev/null || { echo "Bail out! moe-train prepare failed"; exit 1; }
}
