// Plain Java, no Android imports: the session logic and the reference engine, unit-tested on any JVM.
plugins {
    `java-library`
}

tasks.withType<JavaCompile>().configureEach {
    options.release.set(8)   // only the Java 8 API, which Android (minSdk 26) provides
    options.encoding = "UTF-8"
}

dependencies {
    testImplementation("junit:junit:4.13.2")
}

// The tests read golden vectors written by `fmrlrec-edge export ... --android-assets DIR`:
// -PgoldenDir=DIR, else $FMRLREC_GOLDEN_DIR, else the app's assets folder.
tasks.test {
    val golden = providers.gradleProperty("goldenDir")
        .orElse(providers.environmentVariable("FMRLREC_GOLDEN_DIR"))
        .orElse(layout.projectDirectory.dir("../app/src/main/assets").asFile.absolutePath)
    systemProperty("golden.dir", golden.get())
}
