import { describe, expect, it } from 'vitest';

import {
  appendLog,
  countdown,
  describeAge,
  describeFindings,
  formatBox,
  formatPercent,
  newestFirst,
  POLL_BUSY_MS,
  POLL_IDLE_MS,
  pollInterval,
  summarize,
  tickInterval
} from '../deploymentsState';
import { deployment } from './fakeDeployments';

const NOW = Date.parse('2026-11-23T10:05:00Z');
const TRY = deployment({ id: 'tttttttt', kind: 'try', expires: '2026-11-23T10:10:00Z' });

describe('pollInterval', () => {
  it('looks every 2 s while something starts, else every 15 s', () => {
    expect(POLL_BUSY_MS).toBe(2000);
    expect(POLL_IDLE_MS).toBe(15000);
    expect(pollInterval([deployment({ state: 'starting' }), deployment()], true, NOW)).toBe(POLL_BUSY_MS);
    expect(pollInterval([deployment({ state: 'queued' })], true, NOW)).toBe(POLL_BUSY_MS);
    expect(pollInterval([deployment(), deployment({ state: 'failed' })], true, NOW)).toBe(POLL_IDLE_MS);
    expect(pollInterval([], true, NOW)).toBe(POLL_IDLE_MS);
    expect(pollInterval(null, true, NOW)).toBe(POLL_IDLE_MS);
  });

  it('looks fast once a try is past its end, to show it stopped', () => {
    expect(pollInterval([TRY], true, NOW)).toBe(POLL_IDLE_MS);
    expect(pollInterval([TRY], true, Date.parse('2026-11-23T10:10:01Z'))).toBe(POLL_BUSY_MS);
    const ended = { ...TRY, state: 'stopped' as const };
    expect(pollInterval([ended], true, Date.parse('2026-11-23T10:11:00Z'))).toBe(POLL_IDLE_MS);
  });

  it('does not look while the panel is hidden', () => {
    expect(pollInterval([deployment({ state: 'starting' })], false, NOW)).toBeNull();
  });
});

describe('clock and countdown', () => {
  it('ticks every second only while a try counts down', () => {
    expect(tickInterval([deployment(), TRY])).toBe(1000);
    expect(tickInterval([deployment(), { ...TRY, state: 'stopped' }])).toBe(30000);
    expect(tickInterval(null)).toBe(30000);
  });

  it('counts down a try in minutes and seconds', () => {
    expect(countdown(TRY, NOW)).toBe('5:00 left');
    expect(countdown(TRY, NOW + 299_001)).toBe('0:01 left');
    expect(countdown(TRY, NOW + 300_000)).toBe('ending…');
    expect(countdown({ ...TRY, expires: '2026-11-23T11:07:03Z' }, NOW)).toBe('1:02:03 left');
    expect(countdown(deployment(), NOW)).toBeNull();
    expect(countdown({ ...TRY, state: 'stopped' }, NOW)).toBeNull();
  });

  it('says ages as people do', () => {
    expect(describeAge('2026-11-23T10:04:30Z', NOW)).toBe('just now');
    expect(describeAge('2026-11-23T10:00:00Z', NOW)).toBe('5 min ago');
    expect(describeAge('2026-11-23T07:00:00Z', NOW)).toBe('3 h ago');
    expect(describeAge('2026-11-22T10:00:00Z', NOW)).toBe('1 day ago');
    expect(describeAge('2026-11-20T10:00:00Z', NOW)).toBe('3 days ago');
    expect(describeAge('2026-11-23T10:06:00Z', NOW)).toBe('just now'); // a server clock ahead
  });
});

describe('the list', () => {
  it('puts the newest first and sums states up for the folded heading', () => {
    const old = deployment({ id: 'a', created: '2026-11-23T09:00:00Z', state: 'failed' });
    const recent = deployment({ id: 'b', created: '2026-11-23T10:00:00Z' });
    const starting = deployment({ id: 'c', created: '2026-11-23T09:30:00Z', state: 'starting' });
    expect(newestFirst([old, recent, starting]).map(d => d.id)).toEqual(['b', 'c', 'a']);
    expect(summarize([old, recent, starting, deployment({ id: 'd' })])).toBe('1 failed · 2 ready · 1 starting');
    expect(summarize([])).toBeUndefined();
  });
});

describe('appendLog', () => {
  it('joins pieces that cut lines, and keeps only the last lines', () => {
    let log = appendLog({ lines: [], partial: '' }, 'one\ntw');
    expect(log).toEqual({ lines: ['one'], partial: 'tw' });
    log = appendLog(log, 'o\nthree\nfour\n', 3);
    expect(log).toEqual({ lines: ['two', 'three', 'four'], partial: '' });
  });
});

describe('findings', () => {
  const base = { file: 'a.jpg', width: 4, height: 3, time_ms: 12 };
  const box: [number, number, number, number] = [12.4, 30, 140.6, 200];

  it('counts objects by label, most common first', () => {
    const detections = [
      { class_id: 1, label: 'crab', confidence: 0.5, box },
      { class_id: 0, label: 'fish', confidence: 0.9, box },
      { class_id: 0, label: 'fish', confidence: 0.8, box }
    ];
    expect(describeFindings({ ...base, detections })).toBe('3 objects found: 2 fish, 1 crab.');
    expect(describeFindings({ ...base, detections: detections.slice(1, 2) })).toBe('1 object found: 1 fish.');
    expect(describeFindings({ ...base, detections: [] })).toBe('No objects found in this image.');
  });

  it('names the most likely class', () => {
    const classes = [
      { class_id: 3, label: 'copepod', probability: 0.8734 },
      { class_id: 1, label: 'diatom', probability: 0.1 }
    ];
    expect(describeFindings({ ...base, classes })).toBe('Most likely: copepod (87 %).');
  });

  it('formats numbers for reading', () => {
    expect(formatPercent(0.8734)).toBe('87 %');
    expect(formatPercent(0.0123)).toBe('1.2 %');
    expect(formatPercent(1)).toBe('100 %');
    expect(formatBox(box)).toBe('(12, 30) – (141, 200)');
  });
});
