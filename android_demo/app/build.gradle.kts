plugins {
    id("com.android.application")
}

android {
    namespace = "org.fmrlrec.demo"
    compileSdk = 35

    defaultConfig {
        applicationId = "org.fmrlrec.demo"
        minSdk = 26
        targetSdk = 35
        versionCode = 1
        versionName = "0.1.0"
        ndk {
            abiFilters += listOf("arm64-v8a", "x86_64")   // the ABIs the ExecuTorch AAR ships
        }
    }

    buildTypes {
        release {
            isMinifyEnabled = false
        }
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_1_8
        targetCompatibility = JavaVersion.VERSION_1_8
    }

    androidResources {
        noCompress += "pte"   // the program is copied out of the APK as is
    }
}

dependencies {
    implementation(project(":core"))
    // The runtime must be at least as new as the exporter that wrote the .pte (executorch 1.5.1 in
    // pyproject.toml); 1.5.1 is the matching AAR on Maven Central (there is no 1.5.0).
    implementation("org.pytorch:executorch-android:1.5.1")
}
