//! The routing tree, as Alertmanager's `route:` block describes it: [`Route`] is the
//! constructible form (from the YAML file or from code, for the threshold alarms' routes), and
//! [`Tree`] the compiled form the dispatcher walks, with every setting a child leaves unset
//! taken from its parent.
//!
//! Matching follows Alertmanager: an alert enters a route whose matchers all accept it; it is
//! then offered to the children in order, stopping after the first that takes it unless that
//! child has `continue: true`; a route none of whose children takes it is itself a match. The
//! root takes every alert. Routes set at run time ([`Tree::compile`]'s `dynamic`) sit before the
//! configured children of the root and always continue, so the configured children still see
//! every alert; an alert that only a run-time route takes does not also go to the root's
//! receiver (a parent is a match only when no child took the alert).
//!
//! Grouping: a matched route puts an alert in the aggregation group named by the route and the
//! alert's values of the route's `group_by` labels (`...` groups by all labels, so every alert
//! is its own group). The group key written in notifications is Alertmanager's:
//! `<route key>:<group labels>`, where a route key is its ancestors' matchers and its own,
//! each as `{name="value",...}`, joined with `/`.

use std::time::Duration;

use ocelli_model::Matcher;

use super::matchers;
use crate::LabelMap;

/// Alertmanager's defaults for a root route that sets none.
pub const DEFAULT_GROUP_WAIT: Duration = Duration::from_secs(30);
pub const DEFAULT_GROUP_INTERVAL: Duration = Duration::from_secs(5 * 60);
pub const DEFAULT_REPEAT_INTERVAL: Duration = Duration::from_secs(4 * 3600);

/// Which labels group alerts on a route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupBy {
    /// `group_by: ['...']`: every label, so each alert is a group of its own.
    All,
    /// These labels (possibly none: one group for the route).
    Labels(Vec<String>),
}

/// One node of the routing tree. Unset (`None`) settings are inherited from the parent.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Route {
    /// The receiver's name; the root must set it.
    pub receiver: Option<String>,
    pub group_by: Option<GroupBy>,
    pub group_wait: Option<Duration>,
    pub group_interval: Option<Duration>,
    pub repeat_interval: Option<Duration>,
    /// All must accept an alert for the route to take it (`matchers`, `match`, `match_re`).
    pub matchers: Vec<Matcher>,
    /// Go on offering the alert to the next siblings after this route took it.
    pub continue_matching: bool,
    pub routes: Vec<Route>,
}

/// A compiled route: every setting resolved.
#[derive(Clone, Debug)]
pub struct Node {
    /// Unique in the tree: the child indexes from the root, `0` for the root itself,
    /// `d<n>` for the n-th run-time route (e.g. `0.d1.0`, `0.2`).
    pub id: String,
    /// Alertmanager's route key (the matchers from the root down).
    pub key: String,
    pub receiver: String,
    pub group_by: GroupBy,
    pub group_wait: Duration,
    pub group_interval: Duration,
    pub repeat_interval: Duration,
    pub matchers: Vec<Matcher>,
    pub continue_matching: bool,
    pub children: Vec<Node>,
}

/// The compiled routing tree.
#[derive(Clone, Debug)]
pub struct Tree {
    pub root: Node,
}

impl Tree {
    /// Compiles `root` with the run-time routes `dynamic` put first among its children. The
    /// root's unset intervals take Alertmanager's defaults, its unset `group_by` none; an unset
    /// receiver is the empty name (config validation refuses that for configured trees).
    pub fn compile(root: &Route, dynamic: &[Route]) -> Tree {
        let mut node = Node {
            id: "0".into(),
            key: matchers::render(&root.matchers),
            receiver: root.receiver.clone().unwrap_or_default(),
            group_by: root.group_by.clone().unwrap_or(GroupBy::Labels(Vec::new())),
            group_wait: root.group_wait.unwrap_or(DEFAULT_GROUP_WAIT),
            group_interval: root.group_interval.unwrap_or(DEFAULT_GROUP_INTERVAL),
            repeat_interval: root.repeat_interval.unwrap_or(DEFAULT_REPEAT_INTERVAL),
            matchers: root.matchers.clone(),
            continue_matching: false,
            children: Vec::new(),
        };
        let mut children = Vec::new();
        for (i, r) in dynamic.iter().enumerate() {
            let mut c = child(&node, r, format!("{}.d{i}", node.id));
            c.continue_matching = true;
            children.push(c);
        }
        for (i, r) in root.routes.iter().enumerate() {
            children.push(child(&node, r, format!("{}.{i}", node.id)));
        }
        node.children = children;
        Tree { root: node }
    }

    /// The routes that take an alert with these labels, in tree order.
    pub fn matches(&self, labels: &LabelMap) -> Vec<&Node> {
        let mut out = Vec::new();
        walk(&self.root, labels, &mut out);
        out
    }

    /// Every node, depth first.
    pub fn nodes(&self) -> Vec<&Node> {
        fn all<'a>(n: &'a Node, out: &mut Vec<&'a Node>) {
            out.push(n);
            for c in &n.children {
                all(c, out);
            }
        }
        let mut out = Vec::new();
        all(&self.root, &mut out);
        out
    }

    /// The node with this id.
    pub fn node(&self, id: &str) -> Option<&Node> {
        self.nodes().into_iter().find(|n| n.id == id)
    }
}

fn child(parent: &Node, r: &Route, id: String) -> Node {
    let mut node = Node {
        id,
        key: format!("{}/{}", parent.key, matchers::render(&r.matchers)),
        receiver: r.receiver.clone().unwrap_or_else(|| parent.receiver.clone()),
        group_by: r.group_by.clone().unwrap_or_else(|| parent.group_by.clone()),
        group_wait: r.group_wait.unwrap_or(parent.group_wait),
        group_interval: r.group_interval.unwrap_or(parent.group_interval),
        repeat_interval: r.repeat_interval.unwrap_or(parent.repeat_interval),
        matchers: r.matchers.clone(),
        continue_matching: r.continue_matching,
        children: Vec::new(),
    };
    node.children = r
        .routes
        .iter()
        .enumerate()
        .map(|(i, c)| child(&node, c, format!("{}.{i}", node.id)))
        .collect();
    node
}

/// Returns whether `node` took the alert.
fn walk<'a>(node: &'a Node, labels: &LabelMap, out: &mut Vec<&'a Node>) -> bool {
    if !matchers::matches_all(&node.matchers, labels) {
        return false;
    }
    let mut any = false;
    for c in &node.children {
        if walk(c, labels, out) {
            any = true;
            if !c.continue_matching {
                break;
            }
        }
    }
    if !any {
        out.push(node);
    }
    true
}

impl Node {
    /// The alert's group labels on this route: its values of the `group_by` labels it has.
    pub fn group_labels(&self, labels: &LabelMap) -> LabelMap {
        match &self.group_by {
            GroupBy::All => labels.clone(),
            GroupBy::Labels(names) => {
                names.iter().filter_map(|n| labels.get(n).map(|v| (n.clone(), v.clone()))).collect()
            }
        }
    }

    /// Alertmanager's group key for the group with these labels.
    pub fn group_key(&self, group_labels: &LabelMap) -> String {
        format!("{}:{}", self.key, label_set_string(group_labels))
    }
}

/// `{a="1", b="2"}`: how Prometheus' model prints a label set.
pub fn label_set_string(labels: &LabelMap) -> String {
    let parts: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> LabelMap {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn route(receiver: &str, m: &str, cont: bool, routes: Vec<Route>) -> Route {
        Route {
            receiver: Some(receiver.into()),
            matchers: matchers::parse(m).unwrap(),
            continue_matching: cont,
            routes,
            ..Route::default()
        }
    }

    fn receivers(t: &Tree, l: &LabelMap) -> Vec<String> {
        t.matches(l).iter().map(|n| n.receiver.clone()).collect()
    }

    #[test]
    fn first_match_wins_unless_continue() {
        let root = Route {
            receiver: Some("default".into()),
            group_by: Some(GroupBy::Labels(vec!["alertname".into()])),
            routes: vec![
                route(
                    "db",
                    r#"service="db""#,
                    false,
                    vec![route("db-crit", r#"severity="critical""#, false, vec![])],
                ),
                route("all-crit", r#"severity="critical""#, true, vec![]),
                route("crit2", r#"severity=~"crit.*""#, false, vec![]),
                route("never", r#"severity="critical""#, false, vec![]),
            ],
            ..Route::default()
        };
        let t = Tree::compile(&root, &[]);
        assert_eq!(
            receivers(&t, &labels(&[("service", "db"), ("severity", "critical")])),
            ["db-crit"]
        );
        assert_eq!(receivers(&t, &labels(&[("service", "db")])), ["db"]);
        assert_eq!(receivers(&t, &labels(&[("severity", "critical")])), ["all-crit", "crit2"]);
        assert_eq!(receivers(&t, &labels(&[("x", "y")])), ["default"]);
        // children inherit what they leave unset; keys name the matchers down the tree
        let n = t.node("0.0.0").unwrap();
        assert_eq!(n.group_by, GroupBy::Labels(vec!["alertname".into()]));
        assert_eq!(n.group_wait, DEFAULT_GROUP_WAIT);
        assert_eq!(n.key, r#"{}/{service="db"}/{severity="critical"}"#);
    }

    #[test]
    fn dynamic_routes_come_first_and_always_continue() {
        let root = Route {
            receiver: Some("default".into()),
            routes: vec![route("team", r#"team="a""#, false, vec![])],
            ..Route::default()
        };
        let alarm = route("alarm-slack", r#"alarm_id="a1""#, false, vec![]);
        let t = Tree::compile(&root, &[alarm]);
        assert_eq!(t.root.children[0].id, "0.d0");
        assert_eq!(
            receivers(&t, &labels(&[("alarm_id", "a1"), ("team", "a")])),
            ["alarm-slack", "team"]
        );
        // as in Alertmanager, a parent whose child took the alert is not a match itself
        assert_eq!(receivers(&t, &labels(&[("alarm_id", "a1")])), ["alarm-slack"]);
        assert_eq!(receivers(&t, &labels(&[("alarm_id", "a2")])), ["default"]);
    }

    #[test]
    fn group_labels_and_keys() {
        let root = Route {
            receiver: Some("r".into()),
            group_by: Some(GroupBy::Labels(vec!["alertname".into(), "cluster".into()])),
            ..Route::default()
        };
        let t = Tree::compile(&root, &[]);
        let l = labels(&[("alertname", "HighLoad"), ("instance", "n1")]);
        let g = t.root.group_labels(&l);
        assert_eq!(g, labels(&[("alertname", "HighLoad")]));
        assert_eq!(t.root.group_key(&g), r#"{}:{alertname="HighLoad"}"#);
        let all = Route { group_by: Some(GroupBy::All), ..root };
        let t = Tree::compile(&all, &[]);
        assert_eq!(t.root.group_labels(&l), l);
        assert_eq!(t.root.group_key(&l), r#"{}:{alertname="HighLoad", instance="n1"}"#);
    }
}
