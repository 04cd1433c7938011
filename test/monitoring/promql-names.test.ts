/**
 * The tokenizer that finds the metric names of alerts.yaml and
 * dashboard.json (./promql-names.ts): what it keeps, what it drops, and the
 * inputs it refuses.
 */
import { describe, expect, it } from "vitest";
import { metricNames, PromqlTokenError } from "./promql-names.js";

describe("metricNames", () => {
  it.each([
    ["a bare name", "up", ["up"]],
    ["a selector with matchers and a range", 'rate(reclaim_factory_admissions_total{outcome="refused"}[5m])', ["reclaim_factory_admissions_total"]],
    ["aggregation with by before the argument", "sum by (outcome, pod) (rate(x_total[5m]))", ["x_total"]],
    ["aggregation with by after the argument", "sum(rate(x_total[5m])) by (rule)", ["x_total"]],
    ["without", "max without (instance) (g)", ["g"]],
    ["a histogram quantile over buckets", "histogram_quantile(0.9, sum by (le) (rate(h_seconds_bucket[$__rate_interval])))", ["h_seconds_bucket"]],
    ["vector matching keywords and on()", '(sum(a) or on() vector(0)) < 1 and on() (sum(up{job="reclaim-operator"}) > 0)', ["a", "up"]],
    ["on(labels) and ignoring/group_left", "a / ignoring(pod) group_left(node, zone) b and on(instance, source) c", ["a", "b", "c"]],
    ["group_right without a label list", "a * on(x) group_right b", ["a", "b"]],
    ["offset, subquery and @", "rate(b[1d] offset 15m) > 3 * max_over_time(c[1h:5m]) @ start()", ["b", "c"]],
    ["unless and bool", "a unless on() b > bool 0", ["a", "b"]],
    ["numbers, exponents, hex, Inf and NaN are not names", "1e3 * c + 0x1f - Inf > NaN + .5", ["c"]],
    ["strings may hold braces, brackets and names", 'label_replace(q, "dst", "}{[x]", "src", "(not_a_metric)")', ["q"]],
    ["single-quoted and backquoted strings", "label_join(q, 'dst', `,`, 'a', 'b')", ["q"]],
    ["a Grafana variable in a matcher and a range", 'rate(x{job=~"$job", pod="${pod}"}[$__rate_interval])', ["x"]],
    ["a name given by __name__", '{__name__="reclaim_operator_leader", instance="a"} == 1', ["reclaim_operator_leader"]],
    ["a __name__ regex names nothing", '{__name__=~"reclaim_.*"}', []],
    ["a name used twice is listed once", "a / a + b", ["a", "b"]],
    ["names with colons (recording rules)", "job:reclaim_refused:rate5m > 0", ["job:reclaim_refused:rate5m"]],
    ["a comment", "a # not_this\n + b", ["a", "b"]],
    ["absent() and its matcher", 'absent(up{job="chat-factory"})', ["up"]],
  ])("%s", (_title, expr, names) => {
    expect(metricNames(expr)).toEqual(names);
  });

  it.each([
    ["an unterminated string", 'up{job="x}'],
    ["an unclosed matcher", "up{job"],
    ["an unclosed range", "rate(x[5m)"],
  ])("refuses %s with a code", (_title, expr) => {
    expect(() => metricNames(expr)).toThrow(PromqlTokenError);
    try {
      metricNames(expr);
    } catch (err) {
      expect((err as PromqlTokenError).code).toBe("ERR_PROMQL_TOKENS");
    }
  });
});
