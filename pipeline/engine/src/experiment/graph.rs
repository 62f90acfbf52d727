//! The stage graph: a run order in which every stage follows the stages it reads from.

use std::collections::{BTreeMap, BTreeSet};

/// Orders `nodes` so that each comes after its dependencies, keeping the given order among
/// stages that are free to go in any order (so runs follow the file). On a cycle, returns the
/// stages forming one cycle, in order, the first repeated at the end.
pub fn topological_order(
    nodes: &[String],
    deps: &BTreeMap<String, BTreeSet<String>>,
) -> Result<Vec<String>, Vec<String>> {
    let mut done: BTreeSet<&str> = BTreeSet::new();
    let mut order = Vec::with_capacity(nodes.len());
    while order.len() < nodes.len() {
        let next = nodes.iter().find(|n| {
            !done.contains(n.as_str())
                && deps
                    .get(*n)
                    .is_none_or(|d| d.iter().all(|x| done.contains(x.as_str())))
        });
        match next {
            Some(n) => {
                done.insert(n);
                order.push(n.clone());
            }
            None => {
                let stuck: Vec<&String> = nodes
                    .iter()
                    .filter(|n| !done.contains(n.as_str()))
                    .collect();
                return Err(find_cycle(&stuck, deps));
            }
        }
    }
    Ok(order)
}

/// Walks dependency edges among stuck nodes until one repeats: that walk's tail is a cycle.
fn find_cycle(stuck: &[&String], deps: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let stuck_set: BTreeSet<&str> = stuck.iter().map(|s| s.as_str()).collect();
    let mut path: Vec<String> = vec![stuck[0].clone()];
    loop {
        let current = path.last().cloned().unwrap_or_default();
        let next = deps
            .get(&current)
            .and_then(|d| d.iter().find(|x| stuck_set.contains(x.as_str())));
        let Some(next) = next else {
            return path;
        };
        if let Some(start) = path.iter().position(|p| p == next) {
            let mut cycle: Vec<String> = path[start..].to_vec();
            cycle.push(next.clone());
            // Read the cycle in data-flow order: producer before consumer.
            cycle.reverse();
            return cycle;
        }
        path.push(next.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&str, &str)]) -> BTreeMap<String, BTreeSet<String>> {
        let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (consumer, producer) in edges {
            deps.entry(consumer.to_string())
                .or_default()
                .insert(producer.to_string());
        }
        deps
    }

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn dependencies_come_first_and_file_order_is_kept() {
        let deps = graph(&[("train", "split"), ("split", "load"), ("plot", "train")]);
        let order = topological_order(&names(&["plot", "train", "load", "split", "other"]), &deps);
        assert_eq!(
            order,
            Ok(names(&["load", "split", "train", "plot", "other"]))
        );
    }

    #[test]
    fn a_cycle_is_named() {
        let deps = graph(&[("a", "c"), ("b", "a"), ("c", "b"), ("d", "a")]);
        let err = topological_order(&names(&["d", "a", "b", "c"]), &deps).expect_err("cycle");
        assert_eq!(err.first(), err.last());
        let members: BTreeSet<&String> = err.iter().collect();
        assert_eq!(members.len(), 3);
        assert!(!err.contains(&"d".to_string()));
        // Data flows c -> a -> b -> c.
        let pos = |x: &str| err.iter().position(|s| s == x).expect("member");
        assert_eq!(err[(pos("c") + 1) % 3], "a");
    }
}
