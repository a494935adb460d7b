import * as React from 'react';
import { act } from 'react';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import { Catalog, Checks, ReefLabError } from '../api';
import { badgeOf, describeBadge, newestCheck, summarizeReport } from '../checksState';
import { Marketplace } from '../marketplace';
import { ModuleCard } from '../moduleCard';
import { ModuleDetail } from '../moduleDetail';
import { card, checkReport, checkRun, FakeAPI } from './fakeApi';
import { button, click, IRendered, render } from './render';

const CHECKED = '2026-12-06T02:40:00+00:00';
const UNCHECKED: Checks.IBadge = { state: 'unchecked', checked: null, report: null };

function moduleOf(c: Catalog.ICard): Catalog.IModule {
  return { ...c, metadata: { title: c.title }, problems: [], entry_point: c.id, versions: [] };
}

const CLASSIFIER = moduleOf(card('image-classifier', 'Image classifier', { check: UNCHECKED }));

let view: IRendered | null = null;

/** Let fake time pass, with every promise it releases settled and React re-rendered. */
async function pass(ms: number): Promise<void> {
  await act(async () => {
    await vi.advanceTimersByTimeAsync(ms);
  });
}

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
});

afterEach(() => {
  view?.unmount();
  view = null;
  vi.useRealTimers();
});

async function show(api: FakeAPI, module: Catalog.IModule, onChecked = vi.fn()): Promise<HTMLElement> {
  api.modules.set(module.id, module);
  view = await render(<ModuleDetail id={module.id} api={api} onChecked={onChecked} />);
  await pass(0);
  return view.host;
}

const headerBadge = (host: HTMLElement) =>
  host.querySelector<HTMLElement>('.jp-ReefLab-detailHeader .jp-ReefLab-badge-check');
const runState = (host: HTMLElement) => host.querySelector('.jp-ReefLab-checkState')?.textContent;
const reportPath = (id: string) => `/reeflab/api/checks/${id}/report.html`;

describe('a module page checks the module', () => {
  it('says "not checked", starts a check on Check, follows it and shows its report', async () => {
    const api = new FakeAPI();
    const onChecked = vi.fn();
    const host = await show(api, CLASSIFIER, onChecked);
    expect(headerBadge(host)?.textContent).toBe('not checked');
    expect(headerBadge(host)?.tagName).toBe('SPAN');
    expect(host.querySelector('.jp-ReefLab-checkRun')).toBeNull();

    await click(button(host, 'Check'));
    await pass(0);
    expect(api.startCheck).toHaveBeenCalledWith('image-classifier');
    expect(runState(host)).toBe('starting');
    expect(host.querySelector('.jp-ReefLab-checkRun .jp-ReefLab-spinner')).not.toBeNull();
    expect(button(host, 'Check')!.disabled).toBe(true);
    // its log shows while it runs
    expect(host.querySelector('.jp-ReefLab-logs pre')?.textContent).toContain('PASS metadata');

    api.checkRuns[0].state = 'running';
    await pass(2000);
    expect(runState(host)).toBe('checking');

    api.checkRuns[0] = {
      ...api.checkRuns[0],
      state: 'completed',
      report: checkReport('image-classifier', ['tests'])
    };
    await pass(2000);
    expect(runState(host)).toBe('failed');
    expect(host.querySelector('.jp-ReefLab-checkRun .jp-ReefLab-muted')?.textContent).toBe(
      '1 passed · 1 failed · 1 skipped · 2026-12-06'
    );
    const results = [...host.querySelectorAll<HTMLElement>('.jp-ReefLab-checkResult')];
    expect(results.map(r => [r.dataset.check, r.querySelector('.jp-ReefLab-state')?.textContent])).toEqual([
      ['metadata', 'passed'],
      ['tests', 'failed'],
      ['licence', 'skipped']
    ]);
    expect(results[1].querySelector('.jp-ReefLab-checkReason')?.textContent).toBe('Its tests pass: failed.');
    // what the tool said is folded away, and only where it said something
    const details = results[1].querySelector('details')!;
    expect(details.open).toBe(false);
    expect(details.querySelector('pre')?.textContent).toBe('tests said: line 3 is wrong');
    expect(results[0].querySelector('details')).toBeNull();

    const open = host.querySelector<HTMLAnchorElement>('.jp-ReefLab-checkRun a.jp-ReefLab-button')!;
    expect(open.textContent).toContain('Open report');
    expect(new URL(open.href).pathname).toMatch(new RegExp(`${reportPath('check1')}$`));
    expect([open.target, open.rel]).toEqual(['_blank', 'noopener noreferrer']);

    // the badge turned, and links to the report
    const badge = headerBadge(host)!;
    expect(badge.textContent).toBe('check failed');
    expect(badge.tagName).toBe('A');
    expect(badge.getAttribute('href')).toMatch(new RegExp(`${reportPath('check1')}$`));
    expect(badge.title).toBe("Failed the platform's checks on 2026-12-06: tests failed. Open the report.");
    expect(onChecked).toHaveBeenCalledTimes(1);
    expect(onChecked.mock.calls[0][0]).toMatchObject({ id: 'check1', state: 'completed' });

    // once it ended: the log folds, Check works again, and nothing is asked any more
    expect(host.querySelector('.jp-ReefLab-logs')).toBeNull();
    expect(button(host, 'Check')!.disabled).toBe(false);
    const asked = api.check.mock.calls.length;
    await pass(10_000);
    expect(api.check.mock.calls.length).toBe(asked);
  });

  it('shows your latest check of the module when its page opens', async () => {
    const api = new FakeAPI();
    api.checkRuns = [
      checkRun('old', 'image-classifier', {
        state: 'completed',
        created: '2026-12-01T10:00:00+00:00',
        report: checkReport('image-classifier', ['style'])
      }),
      checkRun('new', 'image-classifier', { state: 'completed', report: checkReport('image-classifier') }),
      checkRun('other', 'yolo-detector', { created: '2026-12-07T10:00:00+00:00' })
    ];
    const onChecked = vi.fn();
    const passed: Catalog.IModule = { ...CLASSIFIER, check: { state: 'passed', checked: CHECKED, report: 'new' } };
    const host = await show(api, passed, onChecked);
    const badge = headerBadge(host)!;
    expect(badge.textContent).toBe('checked');
    expect(badge.getAttribute('href')).toMatch(new RegExp(`${reportPath('new')}$`));
    expect(badge.title).toBe("Passed the platform's checks on 2026-12-06. Open the report.");
    expect(runState(host)).toBe('passed');
    expect(host.querySelectorAll('.jp-ReefLab-checkResult')).toHaveLength(3);
    expect(button(host, 'Log')!.getAttribute('aria-expanded')).toBe('false');
    await click(button(host, 'Log'));
    await pass(0);
    expect(host.querySelector('.jp-ReefLab-logs pre')?.textContent).toContain('PASS metadata');
    // nothing ended while the page was open
    expect(onChecked).not.toHaveBeenCalled();
  });

  it('says why a check could not run', async () => {
    const api = new FakeAPI();
    const onChecked = vi.fn();
    const host = await show(api, CLASSIFIER, onChecked);
    await click(button(host, 'Check'));
    await pass(0);
    api.checkRuns[0] = { ...api.checkRuns[0], state: 'failed', reason: 'The module folder is gone.' };
    await pass(2000);
    expect(runState(host)).toBe('could not check');
    expect(host.querySelector('.jp-ReefLab-checkRun [aria-label="Why"]')?.textContent).toBe(
      'The module folder is gone.'
    );
    expect(headerBadge(host)?.textContent).toBe('not checked');
    expect(onChecked).toHaveBeenCalledTimes(1);
  });

  it('says so when the server refuses a check', async () => {
    const api = new FakeAPI();
    api.startCheck.mockRejectedValueOnce(new ReefLabError('A check of this module is already running.', 409));
    const host = await show(api, CLASSIFIER);
    await click(button(host, 'Check'));
    await pass(0);
    expect(host.querySelector('.jp-ReefLab-checks [role="alert"]')?.textContent).toBe(
      'A check of this module is already running.'
    );
    expect(button(host, 'Check')!.disabled).toBe(false);
  });

  it('offers no Check for a module whose code is not installed here, and shows its shared badge', async () => {
    const remote: Catalog.IModule = {
      ...moduleOf(
        card('coral', 'Coral segmenter', {
          source: 'remote',
          check: { state: 'failed', checked: CHECKED, report: 'coral-2026', failed: ['deepaas', 'tests'] }
        })
      ),
      entry_point: null
    };
    const host = await show(new FakeAPI(), remote);
    expect(button(host, 'Check')).toBeUndefined();
    expect(host.querySelector('.jp-ReefLab-checks')?.textContent).toContain('Its code is not installed here');
    const badge = headerBadge(host)!;
    expect(badge.textContent).toBe('check failed');
    expect(badge.getAttribute('href')).toMatch(new RegExp(`${reportPath('coral-2026')}$`));
    expect(badge.title).toBe("Failed the platform's checks on 2026-12-06: deepaas, tests failed. Open the report.");
  });
});

describe('a module page shares a module that passed its checks', () => {
  const sharing = (host: HTMLElement) => host.querySelector<HTMLElement>('[aria-label="Sharing"]');

  it('publishes it once it passed, says who published it and when, and unpublishes it', async () => {
    const api = new FakeAPI();
    const report = checkReport('image-classifier');
    api.checkRuns.push(checkRun('check1', 'image-classifier', { state: 'completed', report }));
    const host = await show(api, CLASSIFIER);
    expect(sharing(host)?.textContent).toContain('It passed its checks: publish it');
    await click(button(host, 'Publish'));
    await pass(0);
    expect(api.publish).toHaveBeenCalledWith('image-classifier');
    expect(sharing(host)?.textContent).toContain("In the platform's catalogue: published by ana on 2026-12-06");
    await click(button(host, 'Unpublish'));
    await pass(0);
    expect(api.unpublish).toHaveBeenCalledWith('image-classifier');
    expect(button(host, 'Publish')!.disabled).toBe(false);
  });

  it('offers Publish only once a check passed, and says why publishing is off', async () => {
    const api = new FakeAPI();
    let host = await show(api, CLASSIFIER);
    expect(button(host, 'Publish')!.disabled).toBe(true);
    expect(sharing(host)?.textContent).toContain('Once it passes its checks');
    view?.unmount();

    api.published.mockRejectedValueOnce(new ReefLabError('Publishing is off on this server.', 400));
    host = await show(api, CLASSIFIER);
    expect(button(host, 'Publish')).toBeUndefined();
    expect(host.querySelector('.jp-ReefLab-checks')?.textContent).toContain(
      'Sharing: Publishing is off on this server.'
    );
  });
});

describe('module cards show whether the module passed its checks', () => {
  it('as "checked", "check failed" or "not checked", never as a link inside the card', async () => {
    const cards = [
      card('a', 'A', { check: { state: 'passed', checked: CHECKED, report: 'r1' } }),
      card('b', 'B', { check: { state: 'failed', checked: CHECKED, report: 'r2', failed: ['style'] } }),
      card('c', 'C', { check: UNCHECKED }),
      card('d', 'D')
    ];
    view = await render(
      <ul>
        {cards.map(c => (
          <ModuleCard key={c.id} card={c} onOpen={vi.fn()} />
        ))}
      </ul>
    );
    const badges = cards.map(c =>
      view!.host.querySelector<HTMLElement>(`[data-module-id="${c.id}"] .jp-ReefLab-badge-check`)
    );
    expect(badges.map(b => b && [b.tagName, b.textContent, b.title])).toEqual([
      ['SPAN', 'checked', "Passed the platform's checks on 2026-12-06"],
      ['SPAN', 'check failed', "Failed the platform's checks on 2026-12-06: style failed"],
      ['SPAN', 'not checked', 'The platform has not checked this module yet'],
      null
    ]);
  });

  it('the marketplace searches again when told a badge changed', async () => {
    const api = new FakeAPI();
    let bump: () => void = () => undefined;
    function Live(): JSX.Element {
      const [key, setKey] = React.useState(0);
      bump = () => setKey(k => k + 1);
      return <Marketplace api={api} reloadKey={key} debounceMs={0} />;
    }
    view = await render(<Live />);
    await pass(0);
    expect(api.searchModules).toHaveBeenCalledTimes(1);
    await act(async () => bump());
    await pass(0);
    expect(api.searchModules).toHaveBeenCalledTimes(2);
  });
});

describe('checksState', () => {
  it('summarises a report and finds the newest run of a module', () => {
    expect(summarizeReport(checkReport('m', ['tests']))).toBe('1 passed · 1 failed · 1 skipped');
    expect(summarizeReport(checkReport('m'))).toBe('2 passed · 1 skipped');
    const runs = [
      checkRun('a', 'm', { created: '2026-12-01T00:00:00+00:00' }),
      checkRun('b', 'm', { created: '2026-12-02T00:00:00+00:00' }),
      checkRun('c', 'n', { created: '2026-12-03T00:00:00+00:00' })
    ];
    expect(newestCheck(runs, 'm')?.id).toBe('b');
    expect(newestCheck(runs, 'x')).toBeNull();
  });

  it('gives a badge only for a run that ended with a report', () => {
    expect(badgeOf(checkRun('a', 'm'))).toBeNull();
    expect(badgeOf(checkRun('a', 'm', { state: 'failed', reason: 'gone' }))).toBeNull();
    expect(badgeOf(checkRun('a', 'm', { state: 'completed', report: checkReport('m') }))).toEqual({
      state: 'passed',
      checked: CHECKED,
      report: 'a',
      failed: []
    });
    expect(describeBadge({ state: 'failed', checked: null, report: null }).title).toBe(
      "Failed the platform's checks on an unknown date"
    );
  });
});
