#!/usr/bin/env bash
# Compile the plain-Java `core` module (main + tests) with javac and run its JUnit 4 tests against the golden
# vectors of an assets folder written by `fmrlrec-edge export ... --android-assets DIR`.
# No Gradle, no network: needs a JDK (javac, java) and JUnit 4 + Hamcrest jars, which Debian ships:
#   apt-get install -y default-jdk-headless junit4
# Usage: android_demo/run_jvm_tests.sh GOLDEN_DIR      (override jars with JUNIT_JAR / HAMCREST_JAR)
# Ends with one line "N passed, M failed" and exits non-zero on any failure.
set -euo pipefail

if [ $# -ne 1 ] || [ ! -f "$1/golden.json" ]; then
    echo "usage: $0 GOLDEN_DIR   (a folder holding golden.json, reference_weights.bin, catalog.tsv)" >&2
    exit 2
fi
golden=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
junit=${JUNIT_JAR:-/usr/share/java/junit4.jar}
hamcrest=${HAMCREST_JAR:-/usr/share/java/hamcrest.jar}
for tool in javac java; do
    command -v "$tool" >/dev/null || { echo "$tool not found: apt-get install -y default-jdk-headless" >&2; exit 2; }
done
for jar in "$junit" "$hamcrest"; do
    [ -f "$jar" ] || { echo "$jar not found: apt-get install -y junit4 (or set JUNIT_JAR / HAMCREST_JAR)" >&2; exit 2; }
done

build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
# --release 8: the core module must only use the Java 8 API, which Android (minSdk 26) provides
javac_flags=(--release 8 -Xlint:all -Xlint:-options -Werror -encoding UTF-8)
find "$here/core/src/main/java" -name '*.java' > "$build/main.txt"
find "$here/core/src/test/java" -name '*.java' > "$build/test.txt"
javac "${javac_flags[@]}" -d "$build/main" @"$build/main.txt"
javac "${javac_flags[@]}" -cp "$build/main:$junit:$hamcrest" -d "$build/test" @"$build/test.txt"

classes=$(cd "$build/test" && find . -name '*Test.class' | sed 's|^\./||; s|\.class$||; s|/|.|g' | sort)
java -Dgolden.dir="$golden" -cp "$build/main:$build/test:$junit:$hamcrest" org.fmrlrec.core.RunJvmTests $classes
