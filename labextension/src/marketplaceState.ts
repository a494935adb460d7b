/** What the marketplace view decides without React: filters, facet lists, pages and wording. */
import { Catalog } from './api';

/** Facet names as a scientist reads them. */
export const FACET_LABELS: Record<Catalog.Facet, string> = {
  tasks: 'Task',
  libraries: 'Library',
  categories: 'Category',
  'data-type': 'Data type',
  tags: 'Tag'
};

export const SORT_LABELS: Record<Catalog.Sort, string> = {
  relevance: 'Best match',
  title: 'Title (A–Z)',
  updated: 'Recently updated'
};

export const SOURCE_LABELS: Record<Catalog.Source, { label: string; title: string }> = {
  builtin: { label: 'built-in', title: 'Comes with ReefLab' },
  installed: { label: 'installed', title: 'Installed on this server' },
  remote: { label: 'remote', title: 'Listed in a remote catalogue; its code is not installed here' }
};

/** The filters with `value` of `facet` switched on or off; facets left with no value disappear. */
export function toggleFilter(filters: Catalog.Filters, facet: Catalog.Facet, value: string): Catalog.Filters {
  const current = filters[facet] ?? [];
  const next = current.includes(value) ? current.filter(v => v !== value) : [...current, value];
  const result: Catalog.Filters = { ...filters };
  if (next.length) {
    result[facet] = next;
  } else {
    delete result[facet];
  }
  return result;
}

/** Every selected (facet, value) pair, in facet order then selection order. */
export function selectedFilters(filters: Catalog.Filters): Array<{ facet: Catalog.Facet; value: string }> {
  return Catalog.FACETS.flatMap(facet => (filters[facet] ?? []).map(value => ({ facet, value })));
}

export interface IFacetChoices {
  /** values to show, each with its count and whether it is selected */
  shown: Array<Catalog.IFacetCount & { selected: boolean }>;
  /** how many more values a "more" button would reveal */
  hidden: number;
}

/**
 * The values of one facet to show: the server's order (most modules first), at most `limit` unless
 * expanded, and every selected value always, even when the current search leaves it no module.
 */
export function facetChoices(
  counts: Catalog.IFacetCount[] | undefined,
  selected: string[] = [],
  limit = 6,
  expanded = false
): IFacetChoices {
  const all: Catalog.IFacetCount[] = [...(counts ?? [])];
  for (const value of selected) {
    if (!all.some(c => c.value === value)) {
      all.push({ value, count: 0 });
    }
  }
  const choices = all.map(c => ({ ...c, selected: selected.includes(c.value) }));
  if (expanded || choices.length <= limit) {
    return { shown: choices, hidden: 0 };
  }
  const shown = choices.filter((c, i) => i < limit || c.selected);
  return { shown, hidden: choices.length - shown.length };
}

/** The results so far after loading another page: items appended (no duplicates), the rest from the newest answer. */
export function mergePage(previous: Catalog.ISearchResult | null, next: Catalog.ISearchResult): Catalog.ISearchResult {
  if (!previous || next.page <= 1) {
    return next;
  }
  const seen = new Set(previous.items.map(item => item.id));
  return { ...next, items: [...previous.items, ...next.items.filter(item => !seen.has(item.id))] };
}

/** "2 modules", "1 module", "No module matches". */
export function describeTotal(total: number): string {
  if (total === 0) {
    return 'No module matches';
  }
  return `${total} module${total === 1 ? '' : 's'}`;
}

/** Megabytes as people say them: 2000 -> "2 GB", 512 -> "512 MB". */
export function formatMemory(megabytes: number): string {
  if (megabytes >= 1000) {
    return `${Number((megabytes / 1000).toFixed(1))} GB`;
  }
  return `${megabytes} MB`;
}

/** What a module needs, in words: "1 CPU · 2 GB memory · 1 GPU (4 GB GPU memory)". */
export function describeNeeds(needs: Partial<Catalog.INeeds> | undefined): string {
  const parts: string[] = [];
  if (needs?.cpu) {
    parts.push(`${needs.cpu} CPU`);
  }
  if (needs?.memory_MB) {
    parts.push(`${formatMemory(needs.memory_MB)} memory`);
  }
  if (needs?.gpu) {
    parts.push(`${needs.gpu} GPU` + (needs.gpu_memory_MB ? ` (${formatMemory(needs.gpu_memory_MB)} GPU memory)` : ''));
  }
  return parts.join(' · ') || 'Not stated by the module';
}

/** A profile's hardware in words: "2 CPU · 4 GB · 1 GPU (A100)". */
export function describeHardware(hardware: Catalog.IHardware, gpuModel?: string | null): string {
  const parts = [`${hardware.cpu} CPU`, formatMemory(hardware.memory_MB)];
  if (hardware.gpu) {
    parts.push(`${hardware.gpu} GPU${gpuModel ? ` (${gpuModel})` : ''}`);
  }
  return parts.join(' · ');
}

export interface ILink {
  label: string;
  url: string;
}

/** "source_code" -> "Source code". */
export function linkLabel(key: string): string {
  const words = key.replace(/[_-]+/g, ' ').trim();
  return words.charAt(0).toUpperCase() + words.slice(1);
}

/** The links of a module's metadata that are safe to open: absolute http(s) URLs only. */
export function safeLinks(links: Record<string, unknown> | undefined | null): ILink[] {
  const found: ILink[] = [];
  for (const [key, value] of Object.entries(links ?? {})) {
    if (typeof value !== 'string') {
      continue;
    }
    let url: URL;
    try {
      url = new URL(value.trim());
    } catch {
      continue;
    }
    if (url.protocol === 'http:' || url.protocol === 'https:') {
      found.push({ label: linkLabel(key), url: url.href });
    }
  }
  return found;
}

/** "resources.inference.cpu" -> "resources › inference › cpu"; '' -> "the whole description". */
export function problemField(field: string): string {
  return field ? field.split('.').join(' › ') : 'the whole description';
}

/** The shipped retraining pipeline (in the examples of your files): trains a module without trained weights. */
export const RETRAIN_PIPELINE = 'notebooks/retrain.pipeline';

/** What the Run pipeline form starts with to train a module: its own network, registered as "<id>-trained". */
export function retrainParameters(module: Pick<Catalog.IModule, 'id' | 'retrain'>): string {
  const lines = Object.entries({ ...module.retrain, MODEL_NAME: `${module.id}-trained` }).map(
    ([name, value]) => `${name}=${value}`
  );
  return [
    ...lines,
    '# DATA=path/to/data.yaml (your images and boxes; left out: generated fish scenes)',
    '# EPOCHS=50'
  ].join('\n');
}
