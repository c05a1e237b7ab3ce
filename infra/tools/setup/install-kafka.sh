#!/usr/bin/env bash
# Install the Kafka broker and CLI tools (jars from Maven Central) into <tools>/kafka/libs.
# <tools> is the first argument, else $F2_TOOLS_DIR, else the repository's .tools/.
#
# Idempotent: a stamp file records the Kafka version and the pom's checksum; when it matches,
# the script exits at once. The jars are resolved by `mvn dependency:copy-dependencies` from
# infra/local/kafka/pom.xml into a temporary folder that replaces libs/ only when complete.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
tools_dir="${1:-${F2_TOOLS_DIR:-$repo_root/.tools}}"
kafka_dir="$tools_dir/kafka"
libs_dir="$kafka_dir/libs"
pom="$repo_root/infra/local/kafka/pom.xml"
stamp="$libs_dir/.installed"

fail() {
    echo "install-kafka: $*" >&2
    exit 1
}

[[ -f "$pom" ]] || fail "missing $pom"
kafka_version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$pom" | head -n1)"
[[ -n "$kafka_version" ]] || fail "no <kafka.version> in $pom"
pom_sum="$(sha256sum "$pom" | cut -d' ' -f1)"
want="kafka_2.13 $kafka_version pom-sha256 $pom_sum"

installed() {
    [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -f "$libs_dir/kafka_2.13-$kafka_version.jar" ]]
}

if installed; then
    exit 0
fi

command -v java >/dev/null 2>&1 || fail "java not found; Kafka $kafka_version needs a JDK 17 or newer"
java_major="$(java -XshowSettings:properties -version 2>&1 \
    | sed -n 's/^ *java.specification.version = \([0-9]*\).*/\1/p')"
[[ "${java_major:-0}" -ge 17 ]] || fail "Kafka $kafka_version needs Java 17 or newer, found '${java_major:-none}'"
command -v mvn >/dev/null 2>&1 || fail "mvn not found; install Maven (apt-get install maven)"

mkdir -p "$kafka_dir"
exec 9>"$kafka_dir/.install.lock"
flock 9
if installed; then  # another installer finished while we waited for the lock
    exit 0
fi

echo "install-kafka: resolving Kafka $kafka_version from Maven Central into $libs_dir" >&2
staging="$(mktemp -d "$kafka_dir/libs.staging.XXXXXX")"
trap 'rm -rf "$staging"' EXIT
mvn_log="$kafka_dir/install.log"
if ! mvn -B -Dstyle.color=never -f "$pom" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$staging" >"$mvn_log" 2>&1; then
    tail -n 30 "$mvn_log" >&2
    fail "mvn dependency:copy-dependencies failed (full log: $mvn_log)"
fi
[[ -f "$staging/kafka_2.13-$kafka_version.jar" ]] \
    || fail "kafka_2.13-$kafka_version.jar missing after mvn; see $mvn_log"

echo "$want" >"$staging/.installed"
chmod 0755 "$staging"
rm -rf "$libs_dir"
mv "$staging" "$libs_dir"
trap - EXIT
echo "install-kafka: installed $(find "$libs_dir" -name '*.jar' | wc -l) jars for Kafka $kafka_version" >&2
