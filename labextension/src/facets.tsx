/** Facet filters: per facet a group of toggle chips with counts, and the chips of what is selected. */
import { closeIcon } from '@jupyterlab/ui-components';
import * as React from 'react';

import { Catalog } from './api';
import { facetChoices, FACET_LABELS, selectedFilters } from './marketplaceState';

export interface IFacetProps {
  facets: Partial<Record<Catalog.Facet, Catalog.IFacetCount[]>>;
  filters: Catalog.Filters;
  onToggle: (facet: Catalog.Facet, value: string) => void;
}

function FacetGroup(props: IFacetProps & { facet: Catalog.Facet }): JSX.Element | null {
  const [expanded, setExpanded] = React.useState(false);
  const { facet } = props;
  const { shown, hidden } = facetChoices(props.facets[facet], props.filters[facet], 6, expanded);
  if (!shown.length) {
    return null;
  }
  return (
    <fieldset className="jp-ReefLab-facet" data-facet={facet}>
      <legend>{FACET_LABELS[facet]}</legend>
      {shown.map(choice => (
        <button
          key={choice.value}
          type="button"
          className="jp-ReefLab-chip"
          data-value={choice.value}
          aria-label={`${choice.value}, ${choice.count} module${choice.count === 1 ? '' : 's'}`}
          aria-pressed={choice.selected}
          title={
            choice.selected
              ? `Showing only modules with ${FACET_LABELS[facet].toLowerCase()} “${choice.value}”; click to remove`
              : `${choice.count} module${choice.count === 1 ? '' : 's'}`
          }
          onClick={() => props.onToggle(facet, choice.value)}
        >
          <span className="jp-ReefLab-chipLabel">{choice.value}</span>
          <span className="jp-ReefLab-chipCount">{choice.count}</span>
        </button>
      ))}
      {(hidden > 0 || expanded) && (
        <button type="button" className="jp-ReefLab-linkButton" onClick={() => setExpanded(!expanded)}>
          {expanded ? 'fewer' : `${hidden} more`}
        </button>
      )}
    </fieldset>
  );
}

/** Every facet that has values in the current results. */
export function FacetFilters(props: IFacetProps): JSX.Element {
  return (
    <div className="jp-ReefLab-facets" aria-label="Filters">
      {Catalog.FACETS.map(facet => (
        <FacetGroup key={facet} facet={facet} {...props} />
      ))}
    </div>
  );
}

/** The filters in use, each removable, so they stay visible when the filter list is folded. */
export function SelectedFilters(props: {
  filters: Catalog.Filters;
  onToggle: (facet: Catalog.Facet, value: string) => void;
  onClear: () => void;
}): JSX.Element | null {
  const selected = selectedFilters(props.filters);
  if (!selected.length) {
    return null;
  }
  return (
    <div className="jp-ReefLab-selected" aria-label="Filters in use">
      {selected.map(({ facet, value }) => (
        <button
          key={`${facet}:${value}`}
          type="button"
          className="jp-ReefLab-chip jp-ReefLab-chip-selected"
          title={`Remove the filter ${FACET_LABELS[facet]}: ${value}`}
          aria-label={`Remove the filter ${FACET_LABELS[facet]}: ${value}`}
          onClick={() => props.onToggle(facet, value)}
        >
          <span className="jp-ReefLab-chipFacet">{FACET_LABELS[facet]}:</span>
          <span className="jp-ReefLab-chipLabel">{value}</span>
          <closeIcon.react tag="span" className="jp-ReefLab-chipRemove" aria-hidden="true" />
        </button>
      ))}
      {selected.length > 1 && (
        <button type="button" className="jp-ReefLab-linkButton" onClick={props.onClear}>
          Clear all
        </button>
      )}
    </div>
  );
}
