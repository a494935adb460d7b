/** The marketplace: search as you type, facet filters with counts, module cards, and a module's detail. */
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { filterIcon, refreshIcon, searchIcon } from '@jupyterlab/ui-components';
import * as React from 'react';

import { api as restAPI, Catalog, Deployments, errorMessage, MarketplaceAPI } from './api';
import { FacetFilters, SelectedFilters } from './facets';
import { describeTotal, selectedFilters, SORT_LABELS, toggleFilter } from './marketplaceState';
import { ModuleCard } from './moduleCard';
import { ModuleDetail } from './moduleDetail';
import { ErrorNotice, Loading } from './notice';
import { useCatalogSearch, useDebounced } from './useSearch';

export interface IMarketplaceProps {
  api?: MarketplaceAPI;
  rendermime?: IRenderMimeRegistry | null;
  perPage?: number;
  /** how long typing must pause before searching */
  debounceMs?: number;
  /** a module was deployed or tried from its detail */
  onDeployed?: (deployment: Deployments.IDeployment) => void;
  /** open a module's page elsewhere (a main-area tab); without it, the page replaces the results */
  onOpen?: (id: string) => void;
  /** a new value searches again (a module's badge changed elsewhere) */
  reloadKey?: number;
}

interface IRefreshState {
  busy: boolean;
  message: string | null;
  error: boolean;
}

export function Marketplace(props: IMarketplaceProps): JSX.Element {
  const api = props.api ?? restAPI;
  const [text, setText] = React.useState('');
  const [filters, setFilters] = React.useState<Catalog.Filters>({});
  const [sort, setSort] = React.useState<Catalog.Sort>('relevance');
  const [showFilters, setShowFilters] = React.useState(false);
  const [openId, setOpenId] = React.useState<string | null>(null);
  const [refresh, setRefresh] = React.useState<IRefreshState>({ busy: false, message: null, error: false });
  const list = React.useRef<HTMLDivElement>(null);
  const lastOpened = React.useRef<string | null>(null);

  const q = useDebounced(text.trim(), props.debounceMs ?? 300);
  const search = useCatalogSearch(api, q, filters, sort, props.perPage ?? 20);
  const result = search.result;
  const selectedCount = selectedFilters(filters).length;
  const typing = text.trim() !== q;

  const { reloadKey } = props;
  React.useEffect(() => {
    if (reloadKey) {
      search.reload();
    }
  }, [reloadKey]);

  const toggle = React.useCallback(
    (facet: Catalog.Facet, value: string) => setFilters(f => toggleFilter(f, facet, value)),
    []
  );

  // back from a detail: put the keyboard focus on the card that was opened
  React.useEffect(() => {
    if (openId === null && lastOpened.current) {
      const cards = list.current?.querySelectorAll<HTMLElement>('[data-module-id]') ?? [];
      [...cards].find(card => card.dataset.moduleId === lastOpened.current)?.focus();
    }
  }, [openId]);

  const open = (id: string) => {
    if (props.onOpen) {
      props.onOpen(id);
      return;
    }
    lastOpened.current = id;
    setOpenId(id);
  };

  const reloadCatalog = () => {
    setRefresh({ busy: true, message: null, error: false });
    api.refreshCatalog().then(
      answer => {
        const problems = answer.errors.length ? ` Some catalogues could not be read: ${answer.errors.join('; ')}` : '';
        setRefresh({
          busy: false,
          message: `Catalogue reloaded: ${describeTotal(answer.modules).toLowerCase()}.${problems}`,
          error: answer.errors.length > 0
        });
        search.reload();
      },
      e => setRefresh({ busy: false, message: errorMessage(e), error: true })
    );
  };

  return (
    <div className="jp-ReefLab-marketplace">
      <div ref={list} hidden={openId !== null}>
        <div className="jp-ReefLab-searchRow">
          <label className="jp-ReefLab-search">
            <searchIcon.react tag="span" className="jp-ReefLab-searchIcon" />
            <input
              type="search"
              value={text}
              placeholder="Search, e.g. plankton"
              aria-label="Search modules"
              onChange={e => setText(e.target.value)}
            />
          </label>
          <button
            type="button"
            className="jp-ReefLab-iconButton"
            title="Reload the catalogue (installed modules and remote catalogues)"
            aria-label="Reload the catalogue"
            disabled={refresh.busy}
            onClick={reloadCatalog}
          >
            <refreshIcon.react tag="span" />
          </button>
        </div>

        <div className="jp-ReefLab-toolbar">
          <button
            type="button"
            className="jp-ReefLab-toolButton"
            aria-expanded={showFilters}
            aria-controls="jp-ReefLab-facets"
            title="Filter by task, library, category, data type or tag"
            onClick={() => setShowFilters(!showFilters)}
          >
            <filterIcon.react tag="span" className="jp-ReefLab-toolIcon" />
            {showFilters ? 'Hide filters' : 'Filters'}
            {selectedCount > 0 && <span className="jp-ReefLab-count">{selectedCount}</span>}
          </button>
          <label className="jp-ReefLab-sort">
            <span>Sort</span>
            <select value={sort} onChange={e => setSort(e.target.value as Catalog.Sort)}>
              {(Object.keys(SORT_LABELS) as Catalog.Sort[]).map(s => (
                <option key={s} value={s}>
                  {SORT_LABELS[s]}
                </option>
              ))}
            </select>
          </label>
        </div>

        {refresh.busy && <Loading>Reloading the catalogue…</Loading>}
        {refresh.message && (
          <div className={refresh.error ? 'jp-ReefLab-warning' : 'jp-ReefLab-info'} role="status">
            {refresh.message}
          </div>
        )}

        <SelectedFilters filters={filters} onToggle={toggle} onClear={() => setFilters({})} />
        <div id="jp-ReefLab-facets" hidden={!showFilters}>
          {result && <FacetFilters facets={result.facets} filters={filters} onToggle={toggle} />}
        </div>

        <div className="jp-ReefLab-status" aria-live="polite">
          {search.loading || typing ? (
            <Loading>Searching…</Loading>
          ) : (
            result && !search.error && <span>{describeTotal(result.total)}</span>
          )}
        </div>
        {search.error && <ErrorNotice message={search.error} onRetry={search.reload} />}
        {result && result.total === 0 && !search.loading && !typing && (
          <p className="jp-ReefLab-muted">
            Try other words{selectedCount ? ', or remove a filter' : ''}.
          </p>
        )}

        {result && result.items.length > 0 && (
          <ul className="jp-ReefLab-cards" aria-label="Modules" aria-busy={search.loading}>
            {result.items.map(card => (
              <ModuleCard key={card.id} card={card} onOpen={open} />
            ))}
          </ul>
        )}
        {result && result.page < result.pages && (
          <button
            type="button"
            className="jp-ReefLab-button jp-ReefLab-more"
            disabled={search.loadingMore}
            onClick={search.showMore}
          >
            {search.loadingMore ? 'Loading…' : `Show more (${result.items.length} of ${result.total} shown)`}
          </button>
        )}
      </div>

      {openId !== null && (
        <ModuleDetail
          id={openId}
          api={api}
          rendermime={props.rendermime}
          onBack={() => setOpenId(null)}
          onDeployed={props.onDeployed}
          onChecked={search.reload}
        />
      )}
    </div>
  );
}
