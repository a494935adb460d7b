/** A module's checks in words: its badge, a run's state, a report's summary. */
import { Checks } from './api';
import { newestFirstByCreated } from './panelState';

/** What a check covers, for the Check button and the page's Checks section. */
export const CHECKS_WHAT =
  'ai4-metadata, its DEEPaaS API, its tests, style, a security scan, its Dockerfile, licence and resources';

export function checkActive(run: Pick<Checks.IRun, 'state'>): boolean {
  return run.state === 'starting' || run.state === 'running';
}

/** The newest check run of `module` among the user's runs, or null. */
export function newestCheck(runs: Checks.IRun[], module: string): Checks.IRun | null {
  return newestFirstByCreated(runs.filter(run => run.module === module))[0] ?? null;
}

/** The badge an ended run gives its module (null while it runs, or when it ended without a report). */
export function badgeOf(run: Checks.IRun): Checks.IBadge | null {
  const report = run.report;
  if (!report || checkActive(run)) {
    return null;
  }
  return {
    state: report.passed ? 'passed' : 'failed',
    checked: report.checked,
    report: run.id,
    failed: report.results.filter(r => r.state === 'failed').map(r => r.name)
  };
}

/** The day of an ISO date ("2026-12-06"), as the marketplace shows its dates. */
function day(iso: string | null): string {
  return iso ? iso.slice(0, 10) : 'an unknown date';
}

/** A badge's words and tooltip. */
export function describeBadge(badge: Checks.IBadge): { label: string; title: string } {
  switch (badge.state) {
    case 'passed':
      return { label: 'checked', title: `Passed the platform's checks on ${day(badge.checked)}` };
    case 'failed': {
      const which = badge.failed?.length ? `: ${badge.failed.join(', ')} failed` : '';
      return { label: 'check failed', title: `Failed the platform's checks on ${day(badge.checked)}${which}` };
    }
    default:
      return { label: 'not checked', title: 'The platform has not checked this module yet' };
  }
}

/** "6 passed · 1 failed · 1 skipped" (counts of zero left out). */
export function summarizeReport(report: Checks.IReport): string {
  const states: Checks.ResultState[] = ['passed', 'failed', 'skipped'];
  return states
    .map(state => [state, report.results.filter(r => r.state === state).length] as const)
    .filter(([, count]) => count > 0)
    .map(([state, count]) => `${count} ${state}`)
    .join(' · ');
}

/** A run's headline and the class of its state label: the report's outcome once there is one. */
export function describeRun(run: Checks.IRun): { words: string; state: string } {
  if (checkActive(run)) {
    return { words: run.state === 'starting' ? 'starting' : 'checking', state: `job-${run.state}` };
  }
  if (run.report) {
    return run.report.passed ? { words: 'passed', state: 'check-passed' } : { words: 'failed', state: 'check-failed' };
  }
  return { words: run.state === 'cancelled' ? 'cancelled' : 'could not check', state: `job-${run.state}` };
}
