/** React hooks of the marketplace: a debounced value, and a catalogue search that never shows stale answers. */
import * as React from 'react';

import { Catalog, errorMessage, MarketplaceAPI } from './api';
import { mergePage } from './marketplaceState';

/** `value`, once it has stopped changing for `delay` ms. */
export function useDebounced<T>(value: T, delay: number): T {
  const [settled, setSettled] = React.useState(value);
  React.useEffect(() => {
    const timer = setTimeout(() => setSettled(value), delay);
    return () => clearTimeout(timer);
  }, [value, delay]);
  return settled;
}

export interface ICatalogSearch {
  /** the latest answer (earlier pages included after "show more"); kept while the next search runs */
  result: Catalog.ISearchResult | null;
  /** a first page is being fetched */
  loading: boolean;
  /** a further page is being fetched */
  loadingMore: boolean;
  error: string | null;
  showMore: () => void;
  /** search again with the same query (after an error, or a catalogue refresh) */
  reload: () => void;
}

/**
 * Search the catalogue whenever the query, filters or sort change. A new search aborts the
 * previous one (and its "show more"), so an answer to an old query can never replace a newer one.
 */
export function useCatalogSearch(
  api: MarketplaceAPI,
  q: string,
  filters: Catalog.Filters,
  sort: Catalog.Sort,
  perPage: number
): ICatalogSearch {
  const [result, setResult] = React.useState<Catalog.ISearchResult | null>(null);
  const [loading, setLoading] = React.useState(true);
  const [loadingMore, setLoadingMore] = React.useState(false);
  const [error, setError] = React.useState<string | null>(null);
  const [generation, setGeneration] = React.useState(0);
  const controller = React.useRef<AbortController | null>(null);

  React.useEffect(() => {
    const current = new AbortController();
    controller.current = current;
    setLoading(true);
    setLoadingMore(false);
    setError(null);
    api
      .searchModules({ q, filters, sort, page: 1, per_page: perPage }, current.signal)
      .then(answer => {
        if (!current.signal.aborted) {
          setResult(answer);
        }
      })
      .catch(e => {
        if (!current.signal.aborted) {
          setError(errorMessage(e));
        }
      })
      .finally(() => {
        if (!current.signal.aborted) {
          setLoading(false);
        }
      });
    return () => current.abort();
  }, [api, q, filters, sort, perPage, generation]);

  const showMore = React.useCallback(() => {
    const current = controller.current;
    if (!current || !result || loadingMore || result.page >= result.pages) {
      return;
    }
    setLoadingMore(true);
    setError(null);
    api
      .searchModules({ q, filters, sort, page: result.page + 1, per_page: perPage }, current.signal)
      .then(answer => {
        if (!current.signal.aborted) {
          setResult(previous => mergePage(previous, answer));
        }
      })
      .catch(e => {
        if (!current.signal.aborted) {
          setError(errorMessage(e));
        }
      })
      .finally(() => {
        if (!current.signal.aborted) {
          setLoadingMore(false);
        }
      });
  }, [api, q, filters, sort, perPage, result, loadingMore]);

  const reload = React.useCallback(() => setGeneration(g => g + 1), []);

  return { result, loading, loadingMore, error, showMore, reload };
}
