/** One module in the search results: a button that opens its detail. */
import * as React from 'react';

import { Catalog } from './api';
import { CheckBadge, FacetBadges, InvalidBadge, SourceBadge, UntrainedBadge } from './badges';

export function ModuleCard(props: { card: Catalog.ICard; onOpen: (id: string) => void }): JSX.Element {
  const { card } = props;
  return (
    <li className="jp-ReefLab-cardItem">
      <button
        type="button"
        className="jp-ReefLab-card"
        data-module-id={card.id}
        aria-label={`${card.title}: ${card.summary}`}
        onClick={() => props.onOpen(card.id)}
      >
        <span className="jp-ReefLab-cardTitle">{card.title}</span>
        <span className="jp-ReefLab-cardSummary">{card.summary || 'No summary given.'}</span>
        <span className="jp-ReefLab-badges">
          {!card.valid && <InvalidBadge />}
          {card.trained === false && <UntrainedBadge />}
          {card.check && <CheckBadge badge={card.check} />}
          <FacetBadges card={card} />
          <SourceBadge source={card.source} />
        </span>
      </button>
    </li>
  );
}
