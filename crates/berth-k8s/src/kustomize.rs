//! The kustomize tree: a base holding every object and the secret generator, and an
//! overlay per environment (its namespace).

use std::fmt::Write as _;

/// `base/kustomization.yaml`: every object, and the app's Secret generated from one
/// file per secret beside it (`secrets/<name>`), so no value is ever in a YAML file;
/// with `backup_key`, the Secret `<app>-backup-key` from `secrets/<backup_key>`, which
/// only the backup CronJob mounts.
pub fn base(app: &str, objects: &[String], secrets: &[String], backup_key: Option<&str>) -> String {
    let mut out = String::from(
        "# Written by `berth k8s render`: every object of the app, from its manifest and\n\
         # site config. Change the site config and render again rather than editing these.\n\
         apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n",
    );
    for o in objects {
        let _ = writeln!(out, "  - {o}");
    }
    if !secrets.is_empty() || backup_key.is_some() {
        out.push_str(
            "# The secrets, one file each under secrets/ (mode 0600, made once by\n\
             # `berth k8s render`): never in a YAML file, a ConfigMap or a log.\n\
             secretGenerator:\n",
        );
    }
    if !secrets.is_empty() {
        let _ = writeln!(out, "  - name: {app}-secrets\n    files:");
        for s in secrets {
            let _ = writeln!(out, "      - {s}=secrets/{s}");
        }
    }
    if let Some(file) = backup_key {
        let _ = writeln!(
            out,
            "  # The backup CronJob's key file: it signs the archives and decrypts their\n  \
             # secrets. Keep a copy off the cluster: `berth restore --key` takes it.\n  \
             - name: {app}-backup-key\n    files:\n      - key=secrets/{file}"
        );
    }
    if !secrets.is_empty() || backup_key.is_some() {
        out.push_str("generatorOptions:\n  disableNameSuffixHash: true\n");
    }
    out
}

/// `overlays/<env>/kustomization.yaml`: the base in the namespace `<app>-<env>`. The
/// base is named under `bases`, which every kustomize reads (Debian 12's kubectl has
/// kustomize 2.0, where `resources` takes files only); newer ones warn that it is
/// deprecated, and build the same.
pub fn overlay(app: &str, env: &str) -> String {
    format!(
        "# The `{env}` environment: the base in its own namespace. Patches for this\n\
         # environment go here (replicas, resources, the Ingress class).\n\
         apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
         namespace: {app}-{env}\nbases:\n  - ../../base\n"
    )
}

/// `restore-base/kustomization.yaml`: the restore Job and the claim its archive comes on.
pub fn restore_base(objects: &[String]) -> String {
    let mut out = String::from(
        "# Written by `berth k8s render`: the restore Job and its archive's claim, used by
\
         # each environment's `restore/<env>/`.\n\
         apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n",
    );
    for o in objects {
        let _ = writeln!(out, "  - {o}");
    }
    out
}

/// `restore/<env>/kustomization.yaml`: the environment with every workload scaled to
/// 0, and the restore Job (which waits for its archive in `dir`). Each stopped
/// workload has its patch (`stop-<name>.yaml`, [`stop`]).
pub fn restore_overlay(app: &str, env: &str, dir: &str, stopped: &[String]) -> String {
    let mut out = format!(
        "# Restores a backup into the `{env}` environment: `kubectl apply -k` this\n\
         # directory scales every workload to 0 and starts the restore Job, which waits\n\
         # for the archive, its key file and `ready` in {dir} (see\n\
         # docs/kubernetes.md); once it succeeded, `kubectl apply -k overlays/{env}`\n\
         # starts the workloads again.\n\
         apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
         namespace: {app}-{env}\nbases:\n  - ../../overlays/{env}\n  - ../../restore-base\npatchesStrategicMerge:\n",
    );
    for name in stopped {
        let _ = writeln!(out, "  - stop-{name}.yaml");
    }
    out
}

/// `stop-<name>.yaml`: the patch that scales a workload to 0.
pub fn stop(kind: &str, name: &str) -> String {
    format!("apiVersion: apps/v1\nkind: {kind}\nmetadata:\n  name: {name}\nspec:\n  replicas: 0\n")
}
