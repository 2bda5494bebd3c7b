//! Binary operators: arithmetic, comparison (filtering or `bool`), and the set operators
//! `and` / `or` / `unless`, between scalars and instant vectors, with Prometheus' vector
//! matching (`on` / `ignoring`, `group_left` / `group_right`) checked per step.

use std::collections::{HashMap, HashSet};

use ocelli_model::{Labels, METRIC_NAME};
use promql_parser::parser::token::{
    T_ADD, T_ATAN2, T_DIV, T_EQLC, T_GTE, T_GTR, T_LAND, T_LOR, T_LSS, T_LTE, T_LUNLESS, T_MOD,
    T_MUL, T_NEQ, T_POW, T_SUB, TokenId,
};
use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};
use xxhash_rust::xxh3::Xxh3;

use crate::eval::{Ctx, merge_same_labels};
use crate::value::{Steps, VSeries, Val, drop_name, drop_these, keep_only, set_label};
use crate::{Error, Result};

fn is_comparison(op: TokenId) -> bool {
    matches!(op, T_EQLC | T_NEQ | T_GTR | T_LSS | T_GTE | T_LTE)
}

/// Whether the result loses the metric name: arithmetic does, except (in Prometheus 2.42)
/// `atan2`; comparisons do only with `bool`.
fn drops_name(op: TokenId, return_bool: bool) -> bool {
    matches!(op, T_ADD | T_SUB | T_MUL | T_DIV | T_POW | T_MOD) || return_bool
}

/// `(value, keep)`: comparisons keep the left value when true.
fn elem(op: TokenId, l: f64, r: f64) -> Result<(f64, bool)> {
    Ok(match op {
        T_ADD => (l + r, true),
        T_SUB => (l - r, true),
        T_MUL => (l * r, true),
        T_DIV => (l / r, true),
        T_POW => (l.powf(r), true),
        T_MOD => (l % r, true),
        T_ATAN2 => (l.atan2(r), true),
        T_EQLC => (l, l == r),
        T_NEQ => (l, l != r),
        T_GTR => (l, l > r),
        T_LSS => (l, l < r),
        T_GTE => (l, l >= r),
        T_LTE => (l, l <= r),
        _ => return Err(Error::BadData(format!("operator {op} not allowed here"))),
    })
}

pub(crate) fn binary(ctx: &Ctx<'_>, b: &BinaryExpr, steps: Steps) -> Result<Val> {
    let op = b.op.id();
    let lhs = ctx.eval(&b.lhs, steps)?;
    let rhs = ctx.eval(&b.rhs, steps)?;
    let return_bool = b.return_bool();
    match (lhs, rhs) {
        (Val::Scalar(l), Val::Scalar(r)) => {
            let mut out = Vec::with_capacity(l.len());
            for (a, c) in l.into_iter().zip(r) {
                let (v, keep) = elem(op, a, c)?;
                out.push(if is_comparison(op) { if keep { 1.0 } else { 0.0 } } else { v });
            }
            Ok(Val::Scalar(out))
        }
        (Val::Vector(v), Val::Scalar(s)) => vector_scalar(op, v, &s, false, return_bool),
        (Val::Scalar(s), Val::Vector(v)) => vector_scalar(op, v, &s, true, return_bool),
        (Val::Vector(l), Val::Vector(r)) => {
            let (card, matching) = match &b.modifier {
                Some(m) => (m.card.clone(), m.matching.clone()),
                None => (VectorMatchCardinality::OneToOne, None),
            };
            let sig = Signature::new(matching.as_ref());
            match op {
                T_LAND | T_LOR | T_LUNLESS => Ok(set_op(op, l, r, &sig, steps)),
                _ => vector_vector(op, l, r, card, matching.as_ref(), &sig, return_bool, steps),
            }
        }
        (l, r) => Err(Error::BadData(format!(
            "binary operator {} not allowed between {} and {}",
            b.op,
            l.type_name(),
            r.type_name()
        ))),
    }
}

fn vector_scalar(
    op: TokenId,
    v: Vec<VSeries>,
    s: &[f64],
    scalar_left: bool,
    return_bool: bool,
) -> Result<Val> {
    let drop = drops_name(op, return_bool);
    let mut out = Vec::with_capacity(v.len());
    for series in v {
        let mut vals = series.vals;
        for (i, slot) in vals.iter_mut().enumerate() {
            let Some(x) = *slot else { continue };
            let (l, r) = if scalar_left { (s[i], x) } else { (x, s[i]) };
            let (mut value, mut keep) = elem(op, l, r)?;
            if is_comparison(op) && scalar_left {
                value = r;
            }
            if return_bool {
                value = if keep { 1.0 } else { 0.0 };
                keep = true;
            }
            *slot = keep.then_some(value);
        }
        let labels = if drop { drop_name(&series.labels) } else { series.labels };
        out.push(VSeries::new(labels, vals));
    }
    if drop {
        merge_same_labels(out)
    } else {
        Ok(Val::Vector(out.into_iter().filter(|s| !s.is_empty()).collect()))
    }
}

/// How series are matched: by the `on` labels, or by all labels but the `ignoring` ones and the
/// metric name.
struct Signature {
    on: bool,
    names: Vec<String>,
}

impl Signature {
    fn new(m: Option<&LabelModifier>) -> Signature {
        match m {
            Some(LabelModifier::Include(l)) => Signature { on: true, names: l.labels.clone() },
            Some(LabelModifier::Exclude(l)) => Signature { on: false, names: l.labels.clone() },
            None => Signature { on: false, names: Vec::new() },
        }
    }

    fn hash(&self, l: &Labels) -> u64 {
        let mut h = Xxh3::new();
        if self.on {
            let mut names: Vec<&String> = self.names.iter().collect();
            names.sort();
            names.dedup();
            for n in names {
                h.update(n.as_bytes());
                h.update(&[0xff]);
                h.update(l.get(n).unwrap_or("").as_bytes());
                h.update(&[0xff]);
            }
        } else {
            for x in l.iter() {
                if x.name == METRIC_NAME || self.names.contains(&x.name) {
                    continue;
                }
                h.update(x.name.as_bytes());
                h.update(&[0xff]);
                h.update(x.value.as_bytes());
                h.update(&[0xff]);
            }
        }
        h.digest()
    }

    /// The labels a match group is known by, for error messages.
    fn group_labels(&self, l: &Labels) -> Labels {
        if self.on {
            keep_only(l, &self.names)
        } else {
            let mut n = self.names.clone();
            n.push(METRIC_NAME.into());
            drop_these(l, &n)
        }
    }
}

fn set_op(op: TokenId, l: Vec<VSeries>, r: Vec<VSeries>, sig: &Signature, steps: Steps) -> Val {
    let lsig: Vec<u64> = l.iter().map(|s| sig.hash(&s.labels)).collect();
    let rsig: Vec<u64> = r.iter().map(|s| sig.hash(&s.labels)).collect();
    let mut lout: Vec<Vec<Option<f64>>> = l.iter().map(|s| s.vals.clone()).collect();
    let mut rout: Vec<Vec<Option<f64>>> = vec![vec![None; steps.n]; r.len()];
    let mut present: HashSet<u64> = HashSet::new();
    for i in 0..steps.n {
        present.clear();
        match op {
            T_LAND | T_LUNLESS => {
                for (s, h) in r.iter().zip(&rsig) {
                    if s.vals[i].is_some() {
                        present.insert(*h);
                    }
                }
                for (k, h) in lsig.iter().enumerate() {
                    let hit = present.contains(h);
                    if (op == T_LAND) != hit {
                        lout[k][i] = None;
                    }
                }
            }
            _ => {
                for (s, h) in l.iter().zip(&lsig) {
                    if s.vals[i].is_some() {
                        present.insert(*h);
                    }
                }
                for (k, (s, h)) in r.iter().zip(&rsig).enumerate() {
                    if s.vals[i].is_some() && !present.contains(h) {
                        rout[k][i] = s.vals[i];
                    }
                }
            }
        }
    }
    let mut out: Vec<VSeries> = l
        .into_iter()
        .zip(lout)
        .map(|(s, vals)| VSeries { labels: s.labels, vals, ts: s.ts })
        .collect();
    if op == T_LOR {
        out.extend(r.into_iter().zip(rout).map(|(s, vals)| VSeries {
            labels: s.labels,
            vals,
            ts: s.ts,
        }));
    }
    out.retain(|s| !s.is_empty());
    Val::Vector(out)
}

#[allow(clippy::too_many_arguments)]
fn vector_vector(
    op: TokenId,
    l: Vec<VSeries>,
    r: Vec<VSeries>,
    card: VectorMatchCardinality,
    matching: Option<&LabelModifier>,
    sig: &Signature,
    return_bool: bool,
    steps: Steps,
) -> Result<Val> {
    let swapped = matches!(card, VectorMatchCardinality::OneToMany(_));
    let include: Vec<String> = card.labels().map(|l| l.labels.clone()).unwrap_or_default();
    let one_to_one = matches!(card, VectorMatchCardinality::OneToOne);
    let (many, one) = if swapped { (r, l) } else { (l, r) };
    // match groups of the "one" side
    let mut group_index: HashMap<u64, usize> = HashMap::new();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (k, s) in one.iter().enumerate() {
        let g = *group_index.entry(sig.hash(&s.labels)).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[g].push(k);
    }
    let many_group: Vec<Option<usize>> =
        many.iter().map(|s| group_index.get(&sig.hash(&s.labels)).copied()).collect();
    let mut current: Vec<Option<usize>> = vec![None; groups.len()];
    let mut matched_at: Vec<usize> = vec![usize::MAX; groups.len()];
    let mut out: Vec<VSeries> = Vec::new();
    let mut out_index: HashMap<Labels, usize> = HashMap::new();
    let mut out_at: Vec<usize> = Vec::new();
    let mut pair_out: HashMap<(usize, usize), usize> = HashMap::new();
    let one_side = if swapped { "left" } else { "right" };
    for i in 0..steps.n {
        for (g, members) in groups.iter().enumerate() {
            current[g] = None;
            for &k in members {
                if one[k].vals[i].is_none() {
                    continue;
                }
                if let Some(prev) = current[g] {
                    return Err(Error::Execution(format!(
                        "found duplicate series for the match group {} on the {one_side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                        sig.group_labels(&one[k].labels),
                        one[k].labels,
                        one[prev].labels
                    )));
                }
                current[g] = Some(k);
            }
        }
        for (m, ms) in many.iter().enumerate() {
            let (Some(mv), Some(g)) = (ms.vals[i], many_group[m]) else { continue };
            let Some(o) = current[g] else { continue };
            let ov = one[o].vals[i].unwrap_or(f64::NAN);
            let (vl, vr) = if swapped { (ov, mv) } else { (mv, ov) };
            let (mut value, mut keep) = elem(op, vl, vr)?;
            if return_bool {
                value = if keep { 1.0 } else { 0.0 };
                keep = true;
            }
            if !keep {
                continue;
            }
            if one_to_one {
                if matched_at[g] == i {
                    return Err(Error::Execution(
                        "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)"
                            .into(),
                    ));
                }
                matched_at[g] = i;
            }
            let k = match pair_out.get(&(m, o)) {
                Some(&k) => k,
                None => {
                    let labels = result_labels(
                        op,
                        &ms.labels,
                        &one[o].labels,
                        one_to_one,
                        matching,
                        &include,
                        return_bool,
                    );
                    let k = *out_index.entry(labels.clone()).or_insert_with(|| {
                        out.push(VSeries::new(labels, vec![None; steps.n]));
                        out_at.push(usize::MAX);
                        out.len() - 1
                    });
                    pair_out.insert((m, o), k);
                    k
                }
            };
            if out_at[k] == i {
                return Err(Error::Execution(if one_to_one {
                    "vector cannot contain metrics with the same labelset".into()
                } else {
                    "multiple matches for labels: grouping labels must ensure unique matches".into()
                }));
            }
            out_at[k] = i;
            out[k].vals[i] = Some(value);
        }
    }
    Ok(Val::Vector(out))
}

fn result_labels(
    op: TokenId,
    many: &Labels,
    one: &Labels,
    one_to_one: bool,
    matching: Option<&LabelModifier>,
    include: &[String],
    return_bool: bool,
) -> Labels {
    let mut l = if drops_name(op, return_bool) { drop_name(many) } else { many.clone() };
    if one_to_one {
        match matching {
            Some(LabelModifier::Include(on)) => l = keep_only(&l, &on.labels),
            Some(LabelModifier::Exclude(ign)) => l = drop_these(&l, &ign.labels),
            None => {}
        }
    }
    for name in include {
        l = set_label(&l, name, one.get(name).unwrap_or(""));
    }
    l
}
