import { describe, expect, it } from 'vitest';

import { Catalog } from '../api';
import {
  describeHardware,
  describeNeeds,
  describeTotal,
  facetChoices,
  formatMemory,
  mergePage,
  problemField,
  safeLinks,
  selectedFilters,
  toggleFilter
} from '../marketplaceState';

function result(page: number, ids: string[], pages = 2): Catalog.ISearchResult {
  return {
    total: 3,
    page,
    per_page: 2,
    pages,
    items: ids.map(id => ({
      id,
      title: id,
      summary: '',
      source: 'builtin',
      valid: true,
      deployable: true,
      updated: '',
      tasks: [],
      libraries: [],
      categories: [],
      'data-type': [],
      tags: []
    })),
    facets: {
      tasks: [{ value: `from page ${page}`, count: 1 }],
      libraries: [],
      categories: [],
      'data-type': [],
      tags: []
    }
  };
}

describe('toggleFilter', () => {
  it('adds a value, then removes it, and drops a facet left empty', () => {
    const start: Catalog.Filters = { tags: ['fish'] };
    const added = toggleFilter(start, 'tasks', 'Classification');
    expect(added).toEqual({ tags: ['fish'], tasks: ['Classification'] });
    const two = toggleFilter(added, 'tasks', 'Other');
    expect(two.tasks).toEqual(['Classification', 'Other']);
    const removed = toggleFilter(toggleFilter(two, 'tasks', 'Classification'), 'tasks', 'Other');
    expect(removed).toEqual({ tags: ['fish'] });
    expect('tasks' in removed).toBe(false);
  });

  it('never changes the filters it was given (React state)', () => {
    const start: Catalog.Filters = { tags: ['fish'] };
    toggleFilter(start, 'tags', 'video');
    toggleFilter(start, 'tags', 'fish');
    expect(start).toEqual({ tags: ['fish'] });
  });

  it('lists selections in facet order', () => {
    expect(selectedFilters({ tags: ['b'], tasks: ['a'], 'data-type': ['Image'] })).toEqual([
      { facet: 'tasks', value: 'a' },
      { facet: 'data-type', value: 'Image' },
      { facet: 'tags', value: 'b' }
    ]);
  });
});

describe('facetChoices', () => {
  const counts = ['a', 'b', 'c', 'd', 'e'].map((value, i) => ({ value, count: 10 - i }));

  it('shows the most common values first and hides the rest behind "more"', () => {
    const { shown, hidden } = facetChoices(counts, [], 3);
    expect(shown.map(c => c.value)).toEqual(['a', 'b', 'c']);
    expect(hidden).toBe(2);
    expect(facetChoices(counts, [], 3, true).shown).toHaveLength(5);
  });

  it('always shows a selected value, even past the limit or with no module left', () => {
    const { shown, hidden } = facetChoices(counts, ['e', 'gone'], 3);
    expect(shown.map(c => [c.value, c.count, c.selected])).toEqual([
      ['a', 10, false],
      ['b', 9, false],
      ['c', 8, false],
      ['e', 6, true],
      ['gone', 0, true]
    ]);
    expect(hidden).toBe(1);
  });

  it('copes with a facet the server did not send', () => {
    expect(facetChoices(undefined, ['x']).shown).toEqual([{ value: 'x', count: 0, selected: true }]);
  });
});

describe('mergePage', () => {
  it('appends a further page without duplicates and takes the newest facets', () => {
    const merged = mergePage(result(1, ['a', 'b']), result(2, ['b', 'c']));
    expect(merged.items.map(i => i.id)).toEqual(['a', 'b', 'c']);
    expect(merged.page).toBe(2);
    expect(merged.facets.tasks[0].value).toBe('from page 2');
  });

  it('starts over with a first page', () => {
    expect(mergePage(result(2, ['x']), result(1, ['a'])).items.map(i => i.id)).toEqual(['a']);
  });
});

describe('wording', () => {
  it('counts modules', () => {
    expect(describeTotal(0)).toBe('No module matches');
    expect(describeTotal(1)).toBe('1 module');
    expect(describeTotal(25)).toBe('25 modules');
  });

  it('says needs and hardware as people do', () => {
    expect(formatMemory(2000)).toBe('2 GB');
    expect(formatMemory(1500)).toBe('1.5 GB');
    expect(formatMemory(512)).toBe('512 MB');
    expect(describeNeeds({ cpu: 1, memory_MB: 2000, gpu: 0, gpu_memory_MB: 0 })).toBe('1 CPU · 2 GB memory');
    expect(describeNeeds({ cpu: 4, memory_MB: 8000, gpu: 1, gpu_memory_MB: 4000 })).toBe(
      '4 CPU · 8 GB memory · 1 GPU (4 GB GPU memory)'
    );
    expect(describeNeeds({})).toBe('Not stated by the module');
    expect(describeHardware({ cpu: 8, memory_MB: 32000, gpu: 1 }, 'A100')).toBe('8 CPU · 32 GB · 1 GPU (A100)');
    expect(problemField('resources.inference.cpu')).toBe('resources › inference › cpu');
    expect(problemField('')).toBe('the whole description');
  });
});

describe('safeLinks', () => {
  it('keeps only absolute http(s) links, labelled from their key', () => {
    expect(
      safeLinks({
        source_code: 'https://github.com/reeflab/reeflab',
        documentation: 'http://example.org/docs',
        citation: 'javascript:alert(1)',
        dataset: 'data:text/html,<script>alert(1)</script>',
        docker_image: 'reeflab/yolo',
        weights: 42,
        base_model: ' https://example.org/base '
      })
    ).toEqual([
      { label: 'Source code', url: 'https://github.com/reeflab/reeflab' },
      { label: 'Documentation', url: 'http://example.org/docs' },
      { label: 'Base model', url: 'https://example.org/base' }
    ]);
    expect(safeLinks(undefined)).toEqual([]);
  });
});
