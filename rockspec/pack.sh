#!/bin/sh
# `make rock`: the source rocks of every rockspec in rockspec/, made from this
# checkout without any network, into OUT (default build/rocks).
#
# A .src.rock is a zip holding the rockspec and the source archive its
# source.url names (here v<version>.tar.gz, unpacking to pipedrive-lua-<version>/,
# as GitHub's release archive does). `luarocks pack <rockspec>` would download
# that URL; this script makes the archive from the checkout's files instead
# (everything but .git and what the build leaves), so `luarocks install
# OUT/<name>.src.rock` builds from exactly these sources.
set -eu
cd "$(dirname "$0")/.."
out=${1:-build/rocks}
version=$(sed -n 's/^version = "\([^"-]*\)-[0-9]*"$/\1/p' rockspec/pipedrive-*-1.rockspec | sort -u)
[ "$(echo "$version" | wc -l)" -eq 1 ] || { echo "rockspec/pack.sh: the rockspecs disagree on the version: $version" >&2; exit 1; }
archive=v$version.tar.gz
for spec in rockspec/*.rockspec; do
  grep -q "url = \"https://[^\"]*/archive/$archive\"" "$spec" ||
    { echo "rockspec/pack.sh: $spec: source.url does not name $archive" >&2; exit 1; }
  grep -q "dir = \"pipedrive-lua-$version\"" "$spec" ||
    { echo "rockspec/pack.sh: $spec: source.dir is not pipedrive-lua-$version" >&2; exit 1; }
done

mkdir -p "$out"
stage=$(mktemp -d "${TMPDIR:-/tmp}/pipedrive-rock.XXXXXX")
trap 'rm -rf "$stage"' EXIT INT TERM
mkdir "$stage/pipedrive-lua-$version"
tar --exclude=./.git --exclude=./build --exclude='./build-*' --exclude=./bench/node_modules \
  --exclude=./spec/tmp --exclude=./pipedrive --exclude=./luarocks --exclude=./lua_modules \
  --exclude=./.luarocks --exclude='*.o' --exclude='*.so' --exclude='./callgrind.out.*' \
  --exclude='./crash-*' --exclude='./leak-*' --exclude='./timeout-*' --exclude='./oom-*' \
  -cf - . | tar -xf - -C "$stage/pipedrive-lua-$version"
# fixed owner and order: the same checkout gives the same archive contents
tar --sort=name --owner=0 --group=0 --numeric-owner -C "$stage" -cf - "pipedrive-lua-$version" |
  gzip -n -9 >"$stage/$archive"
for spec in rockspec/*.rockspec; do
  name=$(basename "$spec" .rockspec)
  cp "$spec" "$stage/"
  rm -f "$out/$name.src.rock"
  (cd "$stage" && zip -q -X "$name.src.rock" "$name.rockspec" "$archive")
  mv "$stage/$name.src.rock" "$out/"
  echo "$out/$name.src.rock"
done
