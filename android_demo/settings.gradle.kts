// fMRLRec on-device demo: `app` (Android, ExecuTorch runtime) + `core` (plain Java session logic, JVM-tested).
pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}

dependencyResolutionManagement {
    repositoriesMode.set(RepositoriesMode.FAIL_ON_PROJECT_REPOS)
    repositories {
        google()
        mavenCentral()   // org.pytorch:executorch-android
    }
}

rootProject.name = "fmrlrec-android-demo"
include(":app", ":core")
