//! The engines berth runs itself on the nodes of a fleet (`engines = [...]` of a role):
//! each added to the node's app as a component, a service and its config files, so
//! they get users, directories, escaping, supervision and restarts like the app's own.
//! Their names begin `berth-`, which an app cannot use.

use berth_model::LoadedManifest;
use berth_model::topology::Engine;

/// The etcd config template; `ROLE` stands for the role that runs it.
const ETCD_YML: &str = include_str!("engines/etcd.yml.j2");

/// Adds to `local` what engine `engine` of role `role` needs on a node.
///
/// # Panics
///
/// Never: the declarations parsed here are constants of this crate.
pub fn add(local: &mut LoadedManifest, role: &str, engine: Engine) {
    let m = &mut local.manifest;
    let app = m.app.name.clone();
    match engine {
        Engine::Etcd => {
            let component = toml::from_str(&format!(
                r#"
source = "system"
packages = ["etcd-server"]
rpm_packages = ["etcd"]
binaries = {{ etcd = "/usr/bin/etcd", etcdctl = "/usr/bin/etcdctl" }}
user = "{app}-etcd"
data_dirs = [{{ path = "berth-etcd", mode = "0700" }}]
"#
            ))
            .expect("etcd's component");
            m.components.insert("berth-etcd".to_owned(), component);
            let template = "berth/etcd.yml.j2".to_owned();
            local
                .templates
                .insert(template.clone(), ETCD_YML.replace("ROLE", role));
            let m = &mut local.manifest;
            m.files.push(
                toml::from_str(&format!(
                    r#"
path = "berth-etcd/etcd.yml"
template = "{template}"
format = "yaml"
owner = "berth-etcd"
mode = "0640"
component = "berth-etcd"
restarts = ["berth-etcd"]
"#
                ))
                .expect("etcd's file"),
            );
            m.services.insert(
                "berth-etcd".to_owned(),
                toml::from_str(
                    r#"
component = "berth-etcd"
description = "etcd, the fleet's consensus store"
command = ["/usr/bin/etcd", "--config-file", "{{ paths.etc }}/berth-etcd/etcd.yml"]
working_dir = "{{ paths.data }}/berth-etcd"
ready = { http = "http://127.0.0.1:2379/health", timeout = "120s" }
stop_timeout = "30s"
"#,
                )
                .expect("etcd's service"),
            );
        }
        // The other engines come with the high-availability work that needs them.
        Engine::Pgbouncer | Engine::Haproxy => {}
    }
}
