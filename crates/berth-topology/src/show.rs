//! A plan as text: its roles, its nodes, the bring-up order; a node's `site.toml`.

use std::fmt::Write as _;

use crate::{Basis, NodePlan, Plan};

/// Memory as people write machine sizes: `4GiB`, `7.5GB`, `512MiB`.
pub fn human_memory(bytes: u64) -> String {
    const GIB: u64 = 1 << 30;
    const MIB: u64 = 1 << 20;
    if bytes == 0 {
        "-".to_owned()
    } else if bytes.is_multiple_of(GIB) {
        format!("{}GiB", bytes / GIB)
    } else if bytes.is_multiple_of(10_000_000) {
        // Published sizes are decimal with one or two places (`7.2GB`, `3.75GB`).
        let hundredths = bytes / 10_000_000;
        let text = format!("{}.{:02}", hundredths / 100, hundredths % 100);
        format!("{}GB", text.trim_end_matches('0').trim_end_matches('.'))
    } else if bytes >= GIB && (u128::from(bytes) * 100) % u128::from(GIB) == 0 {
        let hundredths = u128::from(bytes) * 100 / u128::from(GIB);
        let text = format!("{}.{:02}", hundredths / 100, hundredths % 100);
        format!("{}GiB", text.trim_end_matches('0').trim_end_matches('.'))
    } else if bytes.is_multiple_of(MIB) {
        format!("{}MiB", bytes / MIB)
    } else {
        format!("{bytes}B")
    }
}

/// `3000 users (60 RPS at peak), highly available, from `app``.
fn load_phrase(p: &Plan) -> String {
    let load = match p.users {
        Some(u) => format!("{u} users ({} RPS at peak)", p.rps),
        None => format!("{} RPS at peak", p.rps),
    };
    let ha = if p.ha { ", highly available" } else { "" };
    format!("{load}{ha}, from `{}`", p.source)
}

fn basis_line(p: &Plan) -> String {
    match &p.basis {
        Basis::SingleNode { max_rps } => {
            format!("Sized as: one node runs everything (it carries up to {max_rps} RPS)")
        }
        Basis::Tier {
            name,
            rps,
            users,
            reduced,
        } => {
            let users = users.map(|u| format!(" or {u} users")).unwrap_or_default();
            let cut = if *reduced {
                "; a smaller size carries the load but is not highly available, so each role \
                 is cut to the fewest nodes its availability needs"
            } else {
                ""
            };
            format!("Sized as: measured size {name} (up to {rps} RPS{users}){cut}")
        }
        Basis::Capacity => {
            "Sized as: each role's capacity per node, its minimum and its high availability"
                .to_owned()
        }
    }
}

/// Pads every column of `rows` to its widest cell (the last column is not padded).
fn table(out: &mut String, rows: &[Vec<String>]) {
    let cols = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..cols)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == cols {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ", w = widths[c]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

/// The whole plan as text: load and basis, roles, nodes, totals, order, single points.
pub fn show(p: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Plan for {}", load_phrase(p));
    let _ = writeln!(out, "{}\n", basis_line(p));
    let mut rows = vec![vec![
        "ROLE".to_owned(),
        "NODES".to_owned(),
        "CPUS".to_owned(),
        "MEMORY".to_owned(),
        "WHY".to_owned(),
    ]];
    for r in &p.roles {
        rows.push(vec![
            r.name.clone(),
            r.nodes.to_string(),
            r.cpus.map_or_else(|| "-".to_owned(), |c| c.to_string()),
            r.memory_bytes.map_or_else(|| "-".to_owned(), human_memory),
            r.why.clone(),
        ]);
    }
    table(&mut out, &rows);
    out.push('\n');
    let mut rows = vec![vec![
        "NODE".to_owned(),
        "CPUS".to_owned(),
        "MEMORY".to_owned(),
        "ROLES".to_owned(),
    ]];
    for n in &p.nodes {
        rows.push(vec![
            n.name.clone(),
            n.cpus.to_string(),
            human_memory(n.memory_bytes),
            n.roles.join(", "),
        ]);
    }
    table(&mut out, &rows);
    let _ = writeln!(
        out,
        "\nTotal: {} node{}, {} CPUs, {}",
        p.total.nodes,
        if p.total.nodes == 1 { "" } else { "s" },
        p.total.cpus,
        human_memory(p.total.memory_bytes)
    );
    out.push_str("\nBrought up in this order (a wave's roles in parallel):\n");
    for (i, w) in p.waves.iter().enumerate() {
        let _ = writeln!(out, "  {}. {}", i + 1, w.join(", "));
    }
    if !p.single_points.is_empty() {
        let _ = writeln!(
            out,
            "\nSingle points of failure (one node each): {}",
            p.single_points.join(", ")
        );
    }
    out
}

/// The `site.toml` that starts node `node` of plan `p`: its roles, and what the plan
/// was for. The administrator adds the node's own settings below.
pub fn site_config(p: &Plan, node: &NodePlan) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Node `{}` of a plan for {}.",
        node.name,
        load_phrase(p)
    );
    let _ = writeln!(
        out,
        "# Written by `berth plan topology`: {} CPUs, {} of memory.",
        node.cpus,
        human_memory(node.memory_bytes)
    );
    let roles: Vec<String> = node.roles.iter().map(|r| format!("\"{r}\"")).collect();
    let _ = writeln!(out, "roles = [{}]", roles.join(", "));
    out
}
